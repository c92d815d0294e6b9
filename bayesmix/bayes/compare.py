"""Bayesian model comparison by PSIS-LOO (arviz.compare)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import BayesmixError


def compare(*fits, ic: str = "loo", method: str = "stacking", scale: str = "log",
            **named: Any) -> pd.DataFrame:
    """Compare NUTS fits of the same data by expected log predictive density.

    `compare(post_a, post_b)` names the models m1, m2, ...; keywords name them
    (`compare(slope=post_a, intercept=post_b)`). Every fit must carry the
    pointwise log-likelihood (save_log_lik=True, the default) and be fitted to
    the same number of observations. Returns ArviZ's table (rank, elpd_loo,
    p_loo, elpd_diff, weight, se, dse, warning, scale), best model first."""
    import arviz as az

    from .fit import PosteriorFit

    models: dict[str, Any] = {f"m{i}": f for i, f in enumerate(fits, 1)}
    for name in named:
        if name in models:
            raise BayesmixError(f"two models are named {name!r}")
    models.update(named)
    if len(models) < 2:
        raise BayesmixError("compare needs at least two fits")
    sizes = {}
    for name, fit in models.items():
        if not isinstance(fit, PosteriorFit):
            raise BayesmixError(f"model {name!r} is a {type(fit).__name__}, not a Bayesian "
                                "fit (model.sample()); for ML fits use bayesmix.anova")
        if not fit.stan_data.get("save_log_lik", 0):
            raise BayesmixError(f"model {name!r} was sampled with save_log_lik=False: "
                                "LOO needs the pointwise log-likelihood")
        if fit.prior_only:
            raise BayesmixError(f"model {name!r} was sampled from the prior only")
        sizes[name] = fit.nobs()
    if len(set(sizes.values())) > 1:
        raise BayesmixError("the models were fitted to different numbers of observations ("
                            + ", ".join(f"{k}: {v}" for k, v in sizes.items())
                            + "); LOO comparisons need the same data")
    idatas = {name: fit.to_arviz() for name, fit in models.items()}
    return az.compare(idatas, ic=ic, method=method, scale=scale)


__all__ = ["compare"]
