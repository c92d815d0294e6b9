"""Iteratively reweighted least squares: R's glm.fit, the one IRLS of the package.

glm fits (`bayesmix.glmfit`) run it to convergence; glmer (`bayesmix.glmerfit`) takes lme4's
starting values from it (and glmer.nb alternates it with the maximum-likelihood size). The
family maths (links with R's guards, variance, deviance residuals) come from
`bayesmix.families`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from .errors import BayesmixError, user_stacklevel
from .families import Family

_EPS = np.finfo(float).eps


@dataclass(frozen=True, eq=False)
class IrlsResult:
    beta: np.ndarray
    eta: np.ndarray  # linear predictor including the offset
    mu: np.ndarray
    deviance: float
    R: np.ndarray  # R factor of the last weighted least-squares QR
    working_weights: np.ndarray  # w^2 of the last iteration (0 where unused)
    working_residuals: np.ndarray  # (y - mu) / mu.eta(eta)
    iterations: int
    converged: bool
    boundary: bool


def _wls(X, z, w):
    """Weighted least squares by Householder QR: (beta, R)."""
    Q, R = np.linalg.qr(X * w[:, None], mode="reduced")
    beta = solve_triangular(R, Q.T @ (z * w), lower=False)
    return beta, R


def irls(X, y, weights, offset, family: Family, mustart, epsilon=1e-8, maxit=25,
         phi: float = 1.0) -> IrlsResult:
    """R's glm.fit (Fisher scoring with step halving) from mustart.

    y on R's scale (a proportion for binomial, weights x trials as ``weights``); ``phi``: the
    negative binomial's size (glm.nb's theta), held fixed."""
    link = family.link_spec
    spec = family.spec

    def deviance(mu):
        return float(np.sum(spec.dev_resids(y, mu, weights, phi)))

    def valid(eta, mu):
        return link.valideta(eta) and spec.validmu(mu)

    def halve(start, coefold, ok, loop: int):
        """glm.fit's step halving towards the last coefficients until ok(eta, mu)."""
        if coefold is None:
            raise BayesmixError("no valid set of coefficients has been found: "
                                "please supply starting values")
        for _ in range(maxit):
            start = (start + coefold) / 2
            eta = X @ start + offset
            mu = link.linkinv(eta)
            if ok(eta, mu):
                return start, eta, mu
        raise BayesmixError(f"inner loop {loop}; cannot correct step size")

    n, p = X.shape
    eta = link.linkfun(mustart)
    mu = link.linkinv(eta)
    if not valid(eta, mu):
        raise BayesmixError("cannot find valid starting values for the glm fit")
    devold = deviance(mu)
    coefold = None
    beta = np.zeros(p)
    R = np.eye(p)
    wfinal = np.zeros(n)
    conv = boundary = False
    it = 0
    for it in range(1, maxit + 1):
        mu_eta = link.mu_eta(eta)
        good = (weights > 0) & (mu_eta != 0)
        if not np.any(good):
            raise BayesmixError("no observations informative at iteration %d of the glm fit" % it)
        var = spec.variance(mu, phi)[good]
        if np.any(~np.isfinite(var)) or np.any(var == 0):
            raise BayesmixError("zero or non-finite variance in the glm fit")
        z = (eta - offset)[good] + (y - mu)[good] / mu_eta[good]
        w = np.sqrt(weights[good] * mu_eta[good] ** 2 / var)
        start, R = _wls(X[good], z, w)
        if not np.all(np.isfinite(start)):
            raise BayesmixError(f"non-finite coefficients at iteration {it} of the glm fit")
        wfinal = np.zeros(n)
        wfinal[good] = w ** 2
        eta = X @ start + offset
        mu = link.linkinv(eta)
        dev = deviance(mu)
        boundary = False
        if not np.isfinite(dev):
            start, eta, mu = halve(start, coefold, lambda eta, mu: np.isfinite(deviance(mu)), 1)
            boundary = True
            dev = deviance(mu)
        if not valid(eta, mu):
            start, eta, mu = halve(start, coefold, valid, 2)
            boundary = True
            dev = deviance(mu)
        beta = start
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            conv = True
            break
        devold = dev
        coefold = start
    if not conv:
        warnings.warn("glm.fit: algorithm did not converge", stacklevel=user_stacklevel())
    if spec.r_name == "binomial" and np.any((mu > 1 - 10 * _EPS) | (mu < 10 * _EPS)):
        warnings.warn("glm.fit: fitted probabilities numerically 0 or 1 occurred",
                      stacklevel=user_stacklevel())
    if spec.r_name == "poisson" and np.any(mu < 10 * _EPS):
        warnings.warn("glm.fit: fitted rates numerically 0 occurred", stacklevel=user_stacklevel())
    resid = (y - mu) / link.mu_eta(eta)
    return IrlsResult(beta, eta, mu, dev, R, wfinal, resid, it, conv, boundary)
