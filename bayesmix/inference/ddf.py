"""Denominator degrees of freedom for linear mixed fits: Satterthwaite and Kenward-Roger.

Satterthwaite follows lmerTest 3.1 (Kuznetsova, Brockhoff and Christensen 2017): the variance
parameters are ``varpar = (theta, sigma)``; their asymptotic covariance is twice the inverse of
the Hessian of the deviance (REML criterion for REML fits) in varpar, and the gradient of
``vcov(beta)`` in varpar gives the delta-method variance of ``L vcov(beta) L'``. The Hessian
is computed from the fit's profiled-deviance algebra: analytic in sigma, central differences
with Richardson extrapolation in theta (lmerTest uses numDeriv on the same function).

Kenward-Roger follows pbkrtest 0.5 (Halekoh and Hojsgaard 2014): the small-sample adjusted
covariance of beta and the ddf of an F test of ``L beta = 0`` from the derivatives of the
marginal covariance ``Sigma = sum_r gamma_r G_r`` in the variance/covariance parameters
``gamma`` (the entries of each term's covariance matrix, then sigma^2). REML fits only.

See docs/inference.md for the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import stats

from ..errors import BayesmixError
from ..lmm.theta import tril_positions
from ..registry import COEF_TABLE, NORMALIZE_DDF, provide
from ._core import fit_suffstats, pieces

__all__ = ["satterthwaite", "kenward_roger", "coef_table", "contrast_test", "DDF_METHODS",
           "normalize_ddf"]

DDF_METHODS = ("Satterthwaite", "Kenward-Roger")
KR_MAX_N = 20000  # Kenward-Roger works with the dense n x n marginal covariance, like pbkrtest


def normalize_ddf(ddf):
    """'Satterthwaite' | 'Kenward-Roger' | None (also lme4 / 'none' / 'KR' spellings)."""
    if ddf is None:
        return None
    key = str(ddf).lower().replace("_", "-").replace(" ", "-")
    if key in ("satterthwaite", "satt", "s"):
        return "Satterthwaite"
    if key in ("kenward-roger", "kenwardroger", "kr", "kenward"):
        return "Kenward-Roger"
    if key in ("none", "lme4"):
        return None
    raise BayesmixError(f"unknown ddf {ddf!r}: choose 'Satterthwaite', 'Kenward-Roger' or None "
                        "(lme4's table without degrees of freedom)")


def _check_lmer(fit):
    if getattr(fit, "kind", None) != "lmer":
        raise BayesmixError("denominator degrees of freedom are for linear mixed fits "
                            f"(bayesmix.lmer); got {type(fit).__name__}")


# ---------------------------------------------------------------------------------- Satterthwaite


@dataclass(frozen=True)
class SatterthwaiteState:
    varpar: np.ndarray        # (theta, sigma)
    hessian: np.ndarray       # of the deviance / REML criterion in varpar
    vcov_varpar: np.ndarray   # 2 H^-1 (Moore-Penrose over the positive eigenvalues)
    jac: list                 # d vcov(beta) / d varpar_i, one p x p matrix per varpar
    vcov: np.ndarray          # vcov(beta)
    beta: np.ndarray

    def df(self, L: np.ndarray) -> float:
        """Satterthwaite's df of the contrast ``L beta`` (L a vector)."""
        L = np.asarray(L, float).ravel()
        var = float(L @ self.vcov @ L)
        g = np.array([L @ J @ L for J in self.jac])
        return 2.0 * var ** 2 / float(g @ self.vcov_varpar @ g)


def _fd_points(x, h):
    """Evaluation points for central first and second differences at step h."""
    k = len(x)
    pts = {}
    for i in range(k):
        for s in (1, -1):
            e = np.zeros(k)
            e[i] = s * h[i]
            pts[(i, s)] = x + e
    for i in range(k):
        for j in range(i + 1, k):
            for si in (1, -1):
                for sj in (1, -1):
                    e = np.zeros(k)
                    e[i], e[j] = si * h[i], sj * h[j]
                    pts[(i, j, si, sj)] = x + e
    return pts


SLOW_EVAL = 0.02  # seconds per deviance evaluation above which Richardson is skipped


def _derivatives(fun, x, rel_step=2e-3, floor=0.05):
    """Gradient and Hessian of the vector function ``fun`` (returns a 1-d array) at x:
    central differences at steps h and h/2 combined by Richardson extrapolation. When one
    evaluation is slow (InstEval-sized models) only step h is used: the relative error is
    then ~h^2 = 4e-6, still far below what matters for a df."""
    import time
    x = np.asarray(x, float)
    k = len(x)
    t0 = time.perf_counter()
    f0 = np.asarray(fun(x), float)
    slow = time.perf_counter() - t0 > SLOW_EVAL
    h0 = rel_step * np.maximum(np.abs(x), floor)
    grads, hesss = [], []
    for h in ((h0,) if slow else (h0, h0 / 2)):
        vals = {key: np.asarray(fun(pt), float) for key, pt in _fd_points(x, h).items()}
        G = np.empty((k,) + f0.shape)
        H = np.empty((k, k) + f0.shape)
        for i in range(k):
            G[i] = (vals[(i, 1)] - vals[(i, -1)]) / (2 * h[i])
            H[i, i] = (vals[(i, 1)] - 2 * f0 + vals[(i, -1)]) / h[i] ** 2
            for j in range(i + 1, k):
                H[i, j] = H[j, i] = (vals[(i, j, 1, 1)] - vals[(i, j, 1, -1)]
                                     - vals[(i, j, -1, 1)] + vals[(i, j, -1, -1)]) / (4 * h[i] * h[j])
        grads.append(G)
        hesss.append(H)
    if slow:
        return f0, grads[0], hesss[0]
    G = (4 * grads[1] - grads[0]) / 3
    H = (4 * hesss[1] - hesss[0]) / 3
    return f0, G, H


def satterthwaite(fit) -> SatterthwaiteState:
    """lmerTest's ingredients for Satterthwaite's df (cached on the fit)."""
    _check_lmer(fit)
    state = getattr(fit, "_satterthwaite", None)
    if state is not None:
        return state
    ss = fit_suffstats(fit)
    est = fit.estimates
    theta, sigma = np.asarray(est.theta, float), float(est.sigma)
    n, p, reml = ss.n, ss.p, bool(fit.reml)
    m = n - p if reml else n
    s2 = sigma ** 2

    def fun(th):
        pc = pieces(th, ss)
        a = pc.ldL2 + (pc.ldRX2 if reml else 0.0)
        return np.concatenate([[a + pc.r2 / s2, pc.r2], pc.vcov_unscaled().ravel()])

    from ..optimizer import one_blas_thread  # tiny factorisations: threads only add overhead
    with one_blas_thread():
        f0, G, H = _derivatives(fun, theta)
    k = len(theta)
    r2 = f0[1]
    hess = np.empty((k + 1, k + 1))
    hess[:k, :k] = H[:, :, 0]
    hess[:k, k] = hess[k, :k] = -2.0 * G[:, 1] / sigma ** 3
    hess[k, k] = 6.0 * r2 / sigma ** 4 - 2.0 * m / sigma ** 2
    hess = 0.5 * (hess + hess.T)
    evals, evecs = np.linalg.eigh(hess)
    pos = evals > 1e-8
    h_inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    V = f0[2:].reshape(p, p)
    jac = [s2 * G[i, 2:].reshape(p, p) for i in range(k)] + [2.0 * sigma * V]
    jac = [0.5 * (J + J.T) for J in jac]
    state = SatterthwaiteState(varpar=np.append(theta, sigma), hessian=hess,
                               vcov_varpar=2.0 * h_inv, jac=jac,
                               vcov=np.asarray(est.vcov, float), beta=np.asarray(est.beta, float))
    object.__setattr__(fit, "_satterthwaite", state)
    return state


def _fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's get_Fstat_ddf: the F statistic's ddf from the q t-statistics' dfs."""
    nu = np.asarray(nu, float)
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - len(nu))


# ---------------------------------------------------------------------------------- Kenward-Roger


@dataclass(frozen=True)
class KenwardRogerState:
    vcov: np.ndarray       # Phi: vcov(beta) of the fit
    vcov_adj: np.ndarray   # PhiA: the adjusted covariance
    P: list                # pbkrtest's P_r
    W: np.ndarray          # pbkrtest's W (2 x inverse expected information of gamma)
    beta: np.ndarray

    def _A12(self, L):
        Phi = self.vcov
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        ThetaPhi = Theta @ Phi
        U = [ThetaPhi @ Pi @ Phi for Pi in self.P]
        tr = [np.trace(u) for u in U]
        A1 = A2 = 0.0
        k = len(U)
        for i in range(k):
            for j in range(i, k):
                e = 1.0 if i == j else 2.0
                A1 += e * self.W[i, j] * tr[i] * tr[j]
                A2 += e * self.W[i, j] * float(np.sum(U[i] * U[j].T))
        return A1, A2

    def ddf_and_scaling(self, L: np.ndarray, q: int | None = None) -> tuple[float, float]:
        """pbkrtest's .KR_adjust: the ddf and the F scaling of the test of ``L beta = 0``."""
        L = np.atleast_2d(np.asarray(L, float))
        A1, A2 = self._A12(L)
        q = int(np.linalg.matrix_rank(L)) if q is None else q
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        c1 = g / (3 * q + 2 * (1 - g))
        c2 = (q - g) / (3 * q + 2 * (1 - g))
        c3 = (q + 2 - g) / (3 * q + 2 * (1 - g))
        V0 = 1 + c1 * B
        V1 = 1 - c2 * B
        V2 = 1 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        x = 1 - A2 / q
        ratio = 1.0 if (abs(x) < 1e-14 and abs(V1) < 1e-14) else x / V1
        rho = ratio ** 2 * V0 / V2 / q
        df2 = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
        return float(df2), float(scaling)

    def df(self, L: np.ndarray) -> float:
        """pbkrtest's Lb_ddf (q = number of rows of L)."""
        L = np.atleast_2d(np.asarray(L, float))
        return self.ddf_and_scaling(L, q=L.shape[0])[0]


def _term_Z(t) -> sp.csr_matrix:
    n, p = t.Z.shape
    rows = np.repeat(np.arange(n), p)
    cols = (t.index[:, None] * p + np.arange(p)[None, :]).ravel()
    return sp.csr_matrix((t.Z.ravel(), (rows, cols)), shape=(n, t.n_levels * p))


def kenward_roger(fit) -> KenwardRogerState:
    """pbkrtest's vcovAdj for an lmer fit (cached on the fit). REML fits only."""
    _check_lmer(fit)
    if not fit.reml:
        raise BayesmixError("Kenward-Roger's method is only available for REML model fits "
                            "(as in pbkrtest and lmerTest): fit with REML=True "
                            "(method='reml') or use ddf='Satterthwaite'")
    state = getattr(fit, "_kenward_roger", None)
    if state is not None:
        return state
    d, est = fit.design, fit.estimates
    n = d.n
    if n > KR_MAX_N:
        raise BayesmixError(f"Kenward-Roger needs the dense {n} x {n} marginal covariance "
                            f"(as pbkrtest does); this implementation stops at n = {KR_MAX_N}: "
                            "use ddf='Satterthwaite'")
    X = np.asarray(d.X, float)
    Phi = np.asarray(est.vcov, float)
    sigma2 = float(est.sigma) ** 2
    Zs = [_term_Z(t) for t in d.terms]
    Sigma = sigma2 * np.eye(n)
    for Z, t, C in zip(Zs, d.terms, est.varcorr_cov):
        ZC = Z @ sp.kron(sp.identity(t.n_levels), sp.csr_matrix(C))
        Sigma += (ZC @ Z.T).toarray()
    cf = sla.cho_factor(Sigma, lower=True)
    Sinv = sla.cho_solve(cf, np.eye(n))
    Sinv = 0.5 * (Sinv + Sinv.T)
    SinvX = Sinv @ X
    SinvZ = [np.asarray(Z.T @ Sinv).T for Z in Zs]        # Sigma^-1 Z_k (n x q_k)
    Wk = [np.asarray(Z.T @ SinvX) for Z in Zs]             # Z_k' Sigma^-1 X
    M = [[np.asarray(Zs[a].T @ SinvZ[b]) for b in range(len(Zs))] for a in range(len(Zs))]
    params = []  # (term, E) per variance parameter, pbkrtest's order
    for k, t in enumerate(d.terms):
        for i, j in zip(*tril_positions(t.p)):
            E = np.zeros((t.p, t.p))
            E[i, j] = E[j, i] = 1.0
            params.append((k, sp.kron(sp.identity(t.n_levels), sp.csr_matrix(E)).tocsr()))
    nr = len(params)
    ng = nr + 1
    EW = [E @ Wk[k] for k, E in params]                    # E_r W_k (q_k x p)
    P = [-(Wk[k].T @ ew) for (k, _), ew in zip(params, EW)]
    P.append(-(SinvX.T @ SinvX))
    P = [0.5 * (A + A.T) for A in P]
    SZtSX = [SinvZ[k].T @ SinvX for k in range(len(Zs))]   # Z_k' Sigma^-2 X
    EM = [[(E @ M[k][b]) for b in range(len(Zs))] for k, E in params]  # E_r M_{k b}
    QQ = {}
    Ktr = np.empty((ng, ng))
    for r in range(nr):
        kr, Er = params[r]
        for s in range(r, nr):
            ks, Es = params[s]
            # Q_rs = W_kr' E_r M_{kr ks} E_s W_ks ; Ktrace = tr(E_r M E_s M')
            QQ[r, s] = EW[r].T @ (M[kr][ks] @ EW[s])
            Ktr[r, s] = Ktr[s, r] = float(np.sum(EM[r][ks] * (Es @ M[ks][kr]).T))
        QQ[r, nr] = EW[r].T @ SZtSX[kr]
        Ktr[r, nr] = Ktr[nr, r] = float(np.sum((Er @ (SinvZ[kr].T @ SinvZ[kr])).diagonal()))
    QQ[nr, nr] = SinvX.T @ (Sinv @ SinvX)
    Ktr[nr, nr] = float(np.sum(Sinv * Sinv))
    IE2 = np.empty((ng, ng))
    for i in range(ng):
        PhiPi = Phi @ P[i]
        for j in range(i, ng):
            IE2[i, j] = IE2[j, i] = (Ktr[i, j] - 2 * float(np.sum(Phi * QQ[i, j]))
                                     + float(np.sum(PhiPi * (P[j] @ Phi))))
    condi = float(np.min(np.abs(np.linalg.eigvalsh(IE2))))
    W = 2 * (np.linalg.inv(IE2) if condi > 1e-10 else np.linalg.pinv(IE2))
    W = 0.5 * (W + W.T)
    p = X.shape[1]
    UU = np.zeros((p, p))
    for i in range(ng - 1):
        for j in range(i + 1, ng):
            UU += W[i, j] * (QQ[i, j] - P[i] @ Phi @ P[j])
    UU = UU + UU.T
    for i in range(ng):
        UU += W[i, i] * (QQ[i, i] - P[i] @ Phi @ P[i])
    PhiA = Phi + 2 * Phi @ UU @ Phi
    state = KenwardRogerState(vcov=Phi, vcov_adj=PhiA, P=P, W=W,
                              beta=np.asarray(est.beta, float))
    object.__setattr__(fit, "_kenward_roger", state)
    return state


# ---------------------------------------------------------------------------------- tables


def coef_table(fit, ddf="Satterthwaite") -> pd.DataFrame:
    """lmerTest's summary coefficient table: Estimate, Std. Error, df, t value, Pr(>|t|).
    With Kenward-Roger the standard errors are pbkrtest's adjusted ones (as lmerTest)."""
    method = normalize_ddf(ddf)
    est = fit.estimates
    beta, names = np.asarray(est.beta, float), list(fit.design.X_names)
    p = len(beta)
    if method is None:
        se = np.asarray(est.se, float)
        return pd.DataFrame({"Estimate": beta, "Std. Error": se, "t value": beta / se},
                            index=names)
    if method == "Satterthwaite":
        st = satterthwaite(fit)
        se = np.sqrt(np.diag(st.vcov))
        df = np.array([st.df(np.eye(p)[j]) for j in range(p)])
    else:
        kr = kenward_roger(fit)
        se = np.sqrt(np.diag(kr.vcov_adj))
        df = np.array([kr.df(np.eye(p)[j]) for j in range(p)])
    t = beta / se
    return pd.DataFrame({"Estimate": beta, "Std. Error": se, "df": df, "t value": t,
                         "Pr(>|t|)": 2 * stats.t.sf(np.abs(t), df)}, index=names)


def contrast_test(fit, L, ddf="Satterthwaite") -> dict:
    """lmerTest's contestMD: the F test of ``L beta = 0`` (rows of L are contrasts).

    Returns Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) as lmerTest's anova rows."""
    method = normalize_ddf(ddf) or "Satterthwaite"
    L = np.atleast_2d(np.asarray(L, float))
    sigma2 = float(fit.estimates.sigma) ** 2
    beta = np.asarray(fit.estimates.beta, float)

    def row(F, ndf, ddf_, Fscale=1.0):
        MS = F * sigma2
        Fv = F * Fscale
        return {"Sum Sq": MS * ndf, "Mean Sq": MS, "NumDF": float(ndf), "DenDF": float(ddf_),
                "F value": Fv, "Pr(>F)": float(stats.f.sf(Fv, ndf, ddf_))}

    if method == "Kenward-Roger":
        kr = kenward_roger(fit)
        q = int(np.linalg.matrix_rank(L))
        df2, scaling = kr.ddf_and_scaling(L, q=q)
        Lb = L @ beta
        wald = float(Lb @ np.linalg.solve(L @ kr.vcov_adj @ L.T, Lb))
        return row(wald / q, q, df2, scaling)
    st = satterthwaite(fit)
    if L.shape[0] == 1:
        l = L[0]
        t = float(l @ beta) / np.sqrt(float(l @ st.vcov @ l))
        return row(t * t, 1, st.df(l))
    VL = L @ st.vcov @ L.T
    d, Pm = np.linalg.eigh(VL)
    order = np.argsort(d)[::-1]
    d, Pm = d[order], Pm[:, order]
    tol = max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
    q = int(np.sum(d > tol))
    PtL = (Pm.T @ L)[:q]
    t2 = (PtL @ beta) ** 2 / d[:q]
    F = float(np.sum(t2) / q)
    nu = np.array([2 * d[m] ** 2 / float(g @ st.vcov_varpar @ g)
                   for m in range(q)
                   for g in [np.array([PtL[m] @ J @ PtL[m] for J in st.jac])]])
    return row(F, q, _fstat_ddf(nu))


# MixedFit.coef_table(ddf=...) and its summary reach these through the registry
provide(COEF_TABLE, coef_table)
provide(NORMALIZE_DDF, normalize_ddf)
