"""confint(method="boot"): parametric-bootstrap intervals through bayesmix.bootstrap."""

from __future__ import annotations

from ..errors import BayesmixError


def statistic_is_default(kwargs) -> bool:
    return kwargs.get("statistic") is None


def boot_confint(fit, level: float = 0.95, parm=None, nsim: int = 500, seed=None,
                 executor=None, type: str = "perc", **kwargs):
    """lme4's confint(fit, method = "boot", nsim = 500, boot.type = "perc"): percentile
    intervals of the SDs/correlations, sigma and fixed effects over ``nsim`` parametric
    bootstrap refits (``bayesmix.bootstrap``; seed and executor are passed on)."""
    try:
        from ..parboot import bootstrap
    except ImportError as exc:  # the bootstrap module is not part of this installation
        raise BayesmixError("confint(method='boot') needs bayesmix.bootstrap(fit, nsim, ...), "
                            f"which is not available here ({exc}); use method='profile' or "
                            "'Wald'") from None
    from .profile import select_parm
    res = bootstrap(fit, nsim, seed=seed, executor=executor, **kwargs)
    table = res.confint(level=level, type=type)
    from .profile import varpar_names
    names = varpar_names(fit) + list(fit.design.X_names)
    if statistic_is_default(kwargs) and len(table) == len(names):
        table.index = names  # same order; lme4's names for (x || g) terms
    rows = select_parm(fit, parm)
    missing = [r for r in rows if r not in table.index]
    if missing:
        raise BayesmixError(f"the bootstrap statistic lacks {missing}")
    return table.loc[rows]
