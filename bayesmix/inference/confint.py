"""confint() of lmer and glmer fits (lme4's confint.merMod): profile, Wald or bootstrap
intervals. Results reach it through bayesmix.registry (CONFINT), so results/ imports no
inference code."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..errors import BayesmixError
from ..registry import CONFINT, provide
from .boot import boot_confint
from .profile import profile_confint, select_parm, varpar_names


def merfit_confint(fit, level: float = 0.95, method: str = "profile", parm=None,
                   **boot_args) -> pd.DataFrame:
    """See MerFitMixin.confint."""
    key = str(method).lower()
    if key == "profile":
        if boot_args:
            raise TypeError(f"unexpected arguments for method='profile': {sorted(boot_args)}")
        return profile_confint(fit, level=level, parm=parm)
    if key == "wald":
        if boot_args:
            raise TypeError(f"unexpected arguments for method='Wald': {sorted(boot_args)}")
        z = norm.ppf(0.5 + level / 2)
        est, se = fit.estimates.beta, fit.estimates.se
        lo, hi = f"{50 * (1 - level):g} %", f"{100 - 50 * (1 - level):g} %"
        nv = len(varpar_names(fit))
        table = pd.DataFrame({lo: np.concatenate([np.full(nv, np.nan), est - z * se]),
                              hi: np.concatenate([np.full(nv, np.nan), est + z * se])},
                             index=varpar_names(fit) + list(fit.design.X_names))
        return table.loc[select_parm(fit, parm)]
    if key == "boot":
        return boot_confint(fit, level=level, parm=parm, **boot_args)
    raise BayesmixError(f"unknown confint method {method!r}: choose 'profile', 'Wald' "
                        "or 'boot'")


provide(CONFINT, merfit_confint)
