"""Distributional models (issue #17): the families beyond lme4's (student, lognormal, beta,
beta_binomial, cumulative, zero-inflated and hurdle counts) and ``bf()`` formulas for their
distributional parameters, fitted by Laplace maximum likelihood (`ml`, stan/dist_ml.stan) and
by NUTS (`nuts`, stan/dist_nuts.stan) from one design (`bayesmix.design.dist`); `predict`
turns either fit's parameters into linear predictors, expected values, log-likelihoods and
simulated responses."""
