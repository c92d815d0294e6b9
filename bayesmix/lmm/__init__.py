"""Linear mixed models: sufficient statistics, profiled deviance and lmer-equivalent estimates.

The Stan side lives in ``stan/lmm_functions.stan`` (functions) and ``stan/lmer.stan`` (the generic
ML/REML program whose term structure arrives as data); ``lmm_stan_data`` builds its data.
"""

from .profiled import (
    LmmEstimates,
    block_reduce,
    deviance_formula,
    deviance_from_stan_data,
    is_singular,
    lmm_estimates,
    profiled_deviance,
)
from .suffstats import (
    LmmSuffStats,
    LmmTerm,
    as_terms,
    factors_to_theta,
    k_matrix,
    lambda_matrix,
    lmm_stan_data,
    lmm_stan_inits,
    lmm_suffstats,
    normalize_theta,
    random_design,
    theta_sizes,
    theta_moment_start,
    theta_start,
    theta_to_factors,
)

__all__ = [
    "LmmEstimates",
    "LmmSuffStats",
    "LmmTerm",
    "as_terms",
    "block_reduce",
    "deviance_formula",
    "deviance_from_stan_data",
    "factors_to_theta",
    "is_singular",
    "k_matrix",
    "lambda_matrix",
    "lmm_estimates",
    "lmm_stan_data",
    "lmm_stan_inits",
    "lmm_suffstats",
    "normalize_theta",
    "profiled_deviance",
    "random_design",
    "theta_sizes",
    "theta_moment_start",
    "theta_start",
    "theta_to_factors",
]
