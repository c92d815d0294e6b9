"""Gaussian mixed models: NUTS on the marginal posterior, random effects drawn exactly.

For gaussian identity-link models the random effects integrate out in closed form. The generic
program ``stan/lmm_marginal.stan`` samples only the joint program's shared quantities --
``Intercept`` (of the centred X), slopes ``b``, every term's ``sd``, the Cholesky factors of the
correlated terms' correlation matrices, and ``sigma`` -- with the same priors as the joint
program, and the exact marginal likelihood

    log p(y | beta, theta, sigma) = -(N log(2 pi sigma^2) + log|A| + ||R'[-beta_c; 1]||^2
                                      / sigma^2) / 2

from the block-eliminated reduced system the ML/REML program uses (``lmm_functions.stan``).
Relative factors: ``T_k = diag(sd_k) L_k / sigma``.

After sampling, per draw, the random effects are drawn exactly from their Gaussian conditional
(seeded from the run's seed, so a fit is reproducible):

    u | y, beta, theta, sigma ~ N(A^-1 Lambda' Z'(y - X beta), sigma^2 A^-1),   r = Lambda u,

A = Lambda' Z'Z Lambda + I, factored blocked like the likelihood (per level of the first term,
dense only on the Q2 columns of the other terms: `bayesmix.bayes.ranef_draws`); then
``log_lik`` (conditional on the drawn effects, like the joint program) and ``y_rep``. The
result is a `MarginalPosteriorFit`, a `PosteriorFit` whose draws, summaries and InferenceData
carry the joint program's names (``b``, ``sd_<group>``, ``cor_<group>``, ``r_<group>``,
``sigma``, the response-named log-likelihood and posterior predictive).

`sample_posterior(design, priors, program="auto")` picks the program: the marginal one for
gaussian identity-link models with random effects, no prior weights, no centred terms asked for
and a dense part of the reduced system (Q2, the random-effect columns of every term but the one
with most levels) of at most `DENSE_LIMIT` columns (the exact draws are blocked like the
likelihood, so the number of levels of the first term does not limit them); the joint program
otherwise (with an info log message saying why, when "auto" had to fall back).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import BayesmixError
from ..priors import (PRIOR_CODES, Prior, default_scales, prior_row,  # noqa: F401
                      resolve_priors, slope_names)
from .fit import PosteriorFit, check_sampler_args
from .ranef_draws import cholesky_corr_batch, draw_random_effects

logger = logging.getLogger("bayesmix")

MARGINAL_PROGRAM = "lmm_marginal.stan"
PROGRAMS = ("auto", "marginal", "joint", "generic", "generated")
DENSE_LIMIT = 1000  # above this Q2 the marginal program's dense Cholesky loses to the joint one

# why the marginal program does not apply (`Unsupported.code`); the last one only makes it
# slower than the joint program, so program="marginal" still runs it
FAMILY_LINK, NO_RANDOM = "family_link", "no_random_effects"
WEIGHTS, CENTERED = "weights", "centered"
DENSE_BLOCK = "dense_block"
SLOWER_ONLY = frozenset({DENSE_BLOCK})


@dataclass(frozen=True)
class Unsupported:
    """Why the marginal program does not apply to a model (or would be slower there)."""

    code: str      # FAMILY_LINK, NO_RANDOM, WEIGHTS, CENTERED or DENSE_BLOCK
    detail: str    # for people: what exactly

    @property
    def slower_only(self) -> bool:
        """True when the marginal program could run the model, only more slowly."""
        return self.code in SLOWER_ONLY

    def __str__(self) -> str:
        return self.detail
_RE_SEED = 9_0009  # mixed with the run's seed for the random-effect / y_rep draws


# ---------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class MarginalLayout:
    """How a design maps onto the marginal program.

    order: design term indices (0-based) in the order of the reduced system (most levels
    first; lme4's order, stable). X_s = [1, X centred] (with an intercept) or X; y_s = the
    response minus any offset."""

    order: tuple[int, ...]
    intercept: bool
    means_X: np.ndarray
    X_s: np.ndarray
    y_s: np.ndarray
    terms: tuple            # the design's terms in `order`

    @property
    def q2(self) -> int:
        return int(sum(t.p * t.n_levels for t in self.terms[1:]))

    @property
    def q(self) -> int:
        return int(sum(t.p * t.n_levels for t in self.terms))

    @property
    def sd_start(self) -> list[int]:
        """0-based offset of each (ordered) term's sd's in sd_all."""
        out, pos = [], 0
        for t in self.terms:
            out.append(pos)
            pos += t.p
        return out

    def correlated(self, j: int) -> bool:
        t = self.terms[j]
        return bool(t.correlated) and t.p > 1

    @property
    def cpc_start(self) -> list[int]:
        out, pos = [], 0
        for j, t in enumerate(self.terms):
            out.append(pos)
            if self.correlated(j):
                pos += t.p * (t.p - 1) // 2
        return out


def marginal_layout(design) -> MarginalLayout:
    if not design.terms:
        raise BayesmixError("the marginal program needs at least one random-effect term")
    order = tuple(sorted(range(len(design.terms)), key=lambda k: -design.terms[k].n_levels))
    X = np.asarray(design.X, dtype=float).reshape(design.n, -1)
    intercept = bool(design.X_names) and design.X_names[0] == "(Intercept)"
    if intercept:
        means = X[:, 1:].mean(axis=0)
        X_s = np.column_stack([np.ones(design.n), X[:, 1:] - means])
    else:
        means = np.zeros(0)
        X_s = X
    y = np.asarray(design.y, dtype=float)
    if design.offset is not None:
        y = y - np.asarray(design.offset, dtype=float)
    return MarginalLayout(order, intercept, means, X_s, y,
                          tuple(design.terms[k] for k in order))


def marginal_unsupported(design, priors: Iterable[Prior] = (),
                         centered: Any = False) -> Unsupported | None:
    """Why the marginal program does not apply (or would be slower), or None when it does."""
    fam = design.family
    if not fam.supports("nuts_marginal"):
        return Unsupported(FAMILY_LINK, "the marginal program is for gaussian identity-link "
                           f"models, not {fam}")
    if not design.terms:
        return Unsupported(NO_RANDOM, "the model has no random effects")
    if design.weights is not None:
        return Unsupported(WEIGHTS, "prior weights are not supported by the marginal program")
    if centered is not False and centered is not None:
        return Unsupported(CENTERED, "centered= is an option of the joint program")
    lay = marginal_layout(design)
    if lay.q2 > DENSE_LIMIT:
        return Unsupported(DENSE_BLOCK, f"the marginal program's dense block has Q2 = {lay.q2} "
                           f"> {DENSE_LIMIT} columns (many crossed levels): the joint program "
                           "is faster")
    return None


# ---------------------------------------------------------------- priors as data


def marginal_priors(design, priors: Iterable[Prior] = ()) -> dict:
    """The priors of the joint program as data of the marginal one (codes and arguments in the
    order Intercept, b, sd (reduced-system term order), sigma; LKJ shape per term)."""
    lay = marginal_layout(design)
    slots = resolve_priors(design, tuple(priors))
    scales = default_scales(design)
    dist, args = [], []

    def add(row):
        dist.append(row[0])
        args.append(row[1])

    for sl in slots:
        if sl.cls == "Intercept":
            add(prior_row(sl, scales))
    b_slots = sorted((sl for sl in slots if sl.cls == "b"), key=lambda s: s.index)
    for sl in b_slots:
        add(prior_row(sl, scales))
    sd_slots = {(sl.term, sl.index): sl for sl in slots if sl.cls == "sd"}
    for k in lay.order:
        for m in range(1, design.terms[k].p + 1):
            add(prior_row(sd_slots[(k + 1, m)], scales))
    sig = [sl for sl in slots if sl.cls == "sigma"][0]
    add(prior_row(sig, scales))
    cor = {sl.term: sl for sl in slots if sl.cls == "cor"}
    eta = []
    for k in lay.order:
        sl = cor.get(k + 1)
        eta.append(float(sl.user.args[0]) if sl is not None and sl.user is not None else 1.0)
    return {"n_prior": len(dist), "prior_dist": dist, "prior_args": args, "lkj_eta": eta}


# ---------------------------------------------------------------- program and data


def marginal_code() -> str:
    """The generic marginal program (includes inlined)."""
    from ..engine import stan_file
    return stan_file(MARGINAL_PROGRAM)


def marginal_stancode(design=None, annotate: bool = True) -> str:
    """The marginal program's text; with a design and `annotate`, headed by the formula and the
    Stan <-> model names (comments only)."""
    code = marginal_code()
    if design is None or not annotate:
        return code
    lay = marginal_layout(design)
    lines = [f"Formula: {design.formula.text.strip()}", f"Family:  {design.family}",
             f"Data:    {design.n} observations",
             "Marginal program: random effects integrated out, drawn exactly after sampling.",
             "Stan names:"]
    if lay.intercept:
        lines.append("  Intercept = (Intercept) at the mean of X")
    if slope_names(design):
        lines.append("  b = (" + ", ".join(slope_names(design)) + ")")
    for j, k in enumerate(lay.order):
        t = design.terms[k]
        s = lay.sd_start[j]
        lines.append(f"  sd_all[{s + 1}:{s + t.p}]: {t.group} ({', '.join(t.coef_names)})"
                     + (", correlated" if lay.correlated(j) else ""))
    return "\n".join("// " + line for line in lines) + "\n" + code


def marginal_stan_data(design, priors: Iterable[Prior] = (), prior_only: bool = False,
                       save_log_lik: bool = True, save_y_rep: bool = True) -> dict:
    """The data of ``stan/lmm_marginal.stan``; ``Y``, ``save_log_lik`` and ``save_y_rep`` ride
    along (Stan ignores them) for the random-effect draws and the InferenceData."""
    from ..lmm import lmm_stan_data, lmm_suffstats
    lay = marginal_layout(design)
    ss = lmm_suffstats(lay.X_s, lay.y_s, lay.terms)
    data = lmm_stan_data(lay.X_s, lay.y_s, lay.terms, reml=False, ss=ss)
    P = ss.p
    y_shift = (ss.y_offset * ss.ones_coef if ss.ones_coef is not None and ss.y_offset != 0
               else np.zeros(P))
    data.update({
        "intercept": int(lay.intercept),
        "y_shift": np.asarray(y_shift, dtype=float).tolist(),
        "cor_term": [int(lay.correlated(j)) for j in range(len(lay.terms))],
        "n_sd": int(sum(t.p for t in lay.terms)),
        "n_cpc": int(sum(t.p * (t.p - 1) // 2 for j, t in enumerate(lay.terms)
                         if lay.correlated(j))),
        "prior_only": int(bool(prior_only)),
    })
    data.update(marginal_priors(design, priors))
    data["Y"] = np.asarray(design.y, dtype=float).tolist()
    data["save_log_lik"] = int(bool(save_log_lik))
    data["save_y_rep"] = int(bool(save_y_rep))
    return data


@dataclass(frozen=True, eq=False)
class MarginalProgram:
    """The marginal program of a design (shaped like `JointProgram` where fits look)."""

    code: str
    annotated: str
    structure: Any
    slots: tuple

    @property
    def name(self) -> str:
        return "lmm_marginal"

    def __str__(self) -> str:
        return self.annotated


def marginal_program(design, priors: Iterable[Prior] = ()) -> MarginalProgram:
    from ..stancode import structure_of
    slots = tuple(resolve_priors(design, tuple(priors)))
    return MarginalProgram(marginal_code(), marginal_stancode(design), structure_of(design),
                           slots)


# ---------------------------------------------------------------- numpy mirror


def cholesky_corr(y: np.ndarray, K: int) -> np.ndarray:
    """Stan's cholesky_corr_constrain: K (K - 1) / 2 unconstrained values -> Cholesky factor."""
    z = np.tanh(np.asarray(y, dtype=float))
    L = np.zeros((K, K))
    L[0, 0] = 1.0
    pos = 0
    for i in range(1, K):
        L[i, 0] = z[pos]
        pos += 1
        ss = L[i, 0] ** 2
        for j in range(1, i):
            L[i, j] = z[pos] * np.sqrt(1 - ss)
            pos += 1
            ss += L[i, j] ** 2
        L[i, i] = np.sqrt(1 - ss)
    return L


def relative_factors(lay: MarginalLayout, sd_all: np.ndarray, cpc: np.ndarray,
                     sigma: float) -> list[np.ndarray]:
    """T_k = diag(sd_k) L_k / sigma per term (reduced-system order)."""
    out = []
    for j, t in enumerate(lay.terms):
        s = np.asarray(sd_all[lay.sd_start[j]:lay.sd_start[j] + t.p], dtype=float)
        if lay.correlated(j):
            c0 = lay.cpc_start[j]
            L = cholesky_corr(cpc[c0:c0 + t.p * (t.p - 1) // 2], t.p)
        else:
            L = np.eye(t.p)
        out.append(s[:, None] * L / sigma)
    return out


def marginal_loglik(design, beta: np.ndarray, sd_all: np.ndarray, cpc: np.ndarray,
                    sigma: float) -> float:
    """log p(y | beta, theta, sigma) computed densely (the test mirror of the Stan program).

    beta = [Intercept, b] on the centred X (with an intercept), else b; sd_all in the reduced
    system's term order."""
    from ..lmm import factors_to_theta, lambda_matrix, random_design
    lay = marginal_layout(design)
    theta = factors_to_theta(relative_factors(lay, sd_all, cpc, sigma))
    Lam = lambda_matrix(theta, lay.terms).toarray()
    Z = random_design(lay.terms).toarray()
    r = lay.y_s - lay.X_s @ np.asarray(beta, dtype=float)
    ZL = Z @ Lam
    A = ZL.T @ ZL + np.eye(Lam.shape[0])
    C = np.linalg.cholesky(A)
    c = np.linalg.solve(C, ZL.T @ r)
    n = design.n
    return float(-0.5 * (n * np.log(2 * np.pi * sigma ** 2) + 2 * np.sum(np.log(np.diag(C)))
                         + (r @ r - c @ c) / sigma ** 2))


def _prior_logpdf(x: float, code: int, a: Sequence[float]) -> float:
    from scipy import stats
    if code == 0:
        return 0.0
    f = {1: lambda: stats.norm.logpdf(x, a[0], a[1]),
         2: lambda: stats.t.logpdf(x, a[0], a[1], a[2]),
         3: lambda: stats.cauchy.logpdf(x, a[0], a[1]),
         4: lambda: stats.laplace.logpdf(x, a[0], a[1]),
         5: lambda: stats.logistic.logpdf(x, a[0], a[1]),
         6: lambda: stats.norm.logpdf(x),
         7: lambda: stats.expon.logpdf(x, scale=1 / a[0]),
         8: lambda: stats.gamma.logpdf(x, a[0], scale=1 / a[1]),
         9: lambda: stats.invgamma.logpdf(x, a[0], scale=a[1]),
         10: lambda: stats.lognorm.logpdf(x, a[1], scale=np.exp(a[0])),
         11: lambda: stats.weibull_min.logpdf(x, a[0], scale=a[1])}[code]
    return float(f())


def marginal_log_density(design, data: dict, beta: np.ndarray, sd_all: np.ndarray,
                         cpc: np.ndarray, sigma: float) -> float:
    """The marginal program's target as Stan's optimizer reports it in lp__ with
    jacobian=False: likelihood + priors + LKJ + the Jacobian of the correlations' tanh
    transform (written into the program by hand, so always part of the target; Stan 2.35 has
    no `jacobian +=`). The built-in constraints' Jacobians (sd, sigma) are not included."""
    lay = marginal_layout(design)
    lp = 0.0 if data["prior_only"] else marginal_loglik(design, beta, sd_all, cpc, sigma)
    vals = list(beta) + list(sd_all) + [sigma]
    for x, code, a in zip(vals, data["prior_dist"], data["prior_args"]):
        lp += _prior_logpdf(x, code, a)
    for j, t in enumerate(lay.terms):
        if lay.correlated(j):
            c0 = lay.cpc_start[j]
            L = cholesky_corr(cpc[c0:c0 + t.p * (t.p - 1) // 2], t.p)
            eta, K = data["lkj_eta"][j], t.p
            # Stan's lkj_corr_cholesky_lpdf: log normalising constant + sum (K - k - 1 +
            # 2 (eta - 1)) log L_kk  (k = 1..K-1, 0-based diagonal from the second entry)
            lp += _lkj_log_const(eta, K) + sum(
                (K - k - 1 + 2 * (eta - 1)) * np.log(L[k, k]) for k in range(1, K))
            y = np.asarray(cpc[c0:c0 + t.p * (t.p - 1) // 2], dtype=float)
            z = np.tanh(y)
            lp += float(np.sum(np.log1p(-z ** 2)))
            ss_all = 0.0
            for i in range(1, K):
                ss = L[i, 0] ** 2
                for j2 in range(1, i):
                    ss_all += 0.5 * np.log1p(-ss)
                    ss += L[i, j2] ** 2
            lp += ss_all
    return float(lp)


def _lkj_log_const(eta: float, K: int) -> float:
    """Log normalising constant of the LKJ(eta) density of K x K correlation matrices
    (Lewandowski, Kurowicka and Joe 2009, theorem 5), as in Stan's lkj_corr_cholesky_lpdf."""
    from scipy.special import betaln
    c = 0.0
    for k in range(1, K):
        a = eta + 0.5 * (K - k - 1)
        c += (2 * eta - 2 + K - k) * (K - k) * np.log(2.0) + (K - k) * betaln(a, a)
    return float(-c)


# ---------------------------------------------------------------- the fit


class MarginalPosteriorFit(PosteriorFit):
    """A NUTS fit of the marginal program. Draws of the joint program's names (`r_k`, `sd_k`,
    `Cor_k`, `b_Intercept`, `log_lik`, `y_rep`) are derived from the sampled quantities, the
    random effects drawn exactly from their conditional (seeded from the run's seed)."""

    kind = "nuts"  # exported and loaded like joint fits; export_meta records the program
    program_kind = "marginal"

    @cached_property
    def layout(self) -> MarginalLayout:
        return marginal_layout(self.design)

    def _stan(self, name: str, size: int) -> np.ndarray:
        if size == 0:
            return np.zeros((self.chains, self.ndraws, 0))
        return PosteriorFit.draws(self, name)

    @cached_property
    def _derived(self) -> dict[str, np.ndarray]:
        lay = self.layout
        d = self.design
        C, D = self.chains, self.ndraws
        S = C * D
        Kb = len(slope_names(d))
        b = self._stan("b", Kb).reshape(S, Kb)
        out: dict[str, np.ndarray] = {"b": b}
        if lay.intercept:
            icpt = self._stan("Intercept", 1).reshape(S)
            beta = np.column_stack([icpt, b])
            out["Intercept"] = icpt
            out["b_Intercept"] = icpt - b @ lay.means_X
        else:
            beta = b
        n_sd = sum(t.p for t in lay.terms)
        n_cpc = lay.cpc_start[-1] + (lay.terms[-1].p * (lay.terms[-1].p - 1) // 2
                                     if lay.correlated(len(lay.terms) - 1) else 0)
        sd_all = self._stan("sd_all", n_sd).reshape(S, n_sd)
        cpc = self._stan("cpc_raw", n_cpc).reshape(S, n_cpc)
        sigma = PosteriorFit.draws(self, "sigma").reshape(S)
        out["sigma"] = sigma
        seed = int(self.run.args.get("seed", 0))
        rng = np.random.default_rng([seed, _RE_SEED])
        rr = draw_random_effects(lay, beta, sd_all, cpc, sigma, rng, self.prior_only)
        pos = 0
        for j, k in enumerate(lay.order):
            t = lay.terms[j]
            s0 = lay.sd_start[j]
            out[f"sd_{k + 1}"] = sd_all[:, s0:s0 + t.p]
            out[f"r_{k + 1}"] = rr[:, pos:pos + t.p * t.n_levels].reshape(S, t.n_levels, t.p)
            pos += t.p * t.n_levels
            if lay.correlated(j):
                c0 = lay.cpc_start[j]
                nc = t.p * (t.p - 1) // 2
                L = cholesky_corr_batch(cpc[:, c0:c0 + nc], t.p)
                out[f"L_{k + 1}"] = L
                out[f"Cor_{k + 1}"] = L @ np.swapaxes(L, 1, 2)
        save_ll = bool(self.stan_data.get("save_log_lik", 0))
        save_rep = bool(self.stan_data.get("save_y_rep", 0))
        if save_ll or save_rep:
            from ..lmm import random_design
            Z = random_design(lay.terms)
            mu = beta @ lay.X_s.T
            mu += (Z @ rr.T).T                             # (S, n), offset removed
            # (S, n) arrays, updated in place; y_rep (its normals come from `rng`, after the
            # random effects') on a second thread while log_lik is computed here: the large
            # numpy operations release the GIL

            def y_rep():
                yr = rng.standard_normal(mu.shape)
                yr *= sigma[:, None]
                yr += mu
                if d.offset is not None:
                    yr += np.asarray(d.offset, dtype=float)[None, :]
                return yr

            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=1) as pool:
                job = pool.submit(y_rep) if save_rep else None
                if save_ll:
                    ll = lay.y_s[None, :] - mu
                    ll /= sigma[:, None]
                    np.square(ll, out=ll)
                    ll *= -0.5
                    ll -= (0.5 * np.log(2 * np.pi) + np.log(sigma))[:, None]
                    out["log_lik"] = ll
                if job is not None:
                    out["y_rep"] = job.result()
        return {k: v.reshape((C, D) + v.shape[1:]) for k, v in out.items()}

    def draws(self, name: str) -> np.ndarray:
        """A variable's draws as ``(chain, draw, *shape)``, under the joint program's names."""
        if name in self._derived:
            return self._derived[name]
        return PosteriorFit.draws(self, name)

    def export_meta(self) -> dict:
        return {"priors": [p.to_dict() for p in self.priors], "program": "marginal",
                "centered": [], "inits": self.inits}

    @classmethod
    def from_export(cls, design, meta: dict, run, stan_data: dict) -> "MarginalPosteriorFit":
        from ..priors import prior
        priors = tuple(prior(**p) for p in meta["priors"])
        return cls(design, priors, run, marginal_program(design, priors), stan_data,
                   inits=meta.get("inits"))


def fit_marginal(design, priors: Iterable[Prior] = (), *, chains: int = 4,
                 iter_warmup: int = 1000, iter_sampling: int = 1000, seed: int | None = None,
                 adapt_delta: float = 0.8, max_treedepth: int = 10, metric: str = "diag_e",
                 thin: int = 1, prior_only: bool = False, show_progress: bool | None = None,
                 engine: str = "auto", inits: dict | None = None, save_log_lik: bool = True,
                 save_y_rep: bool = True, output_dir: str | None = None,
                 diagnostics: bool = True) -> MarginalPosteriorFit:
    """Sample the marginal posterior of a gaussian mixed model (see the module docstring);
    arguments as `fit_nuts`."""
    check_sampler_args(chains, iter_warmup, iter_sampling, thin, adapt_delta, metric)
    priors = tuple(priors)
    why = marginal_unsupported(design, priors)
    if why is not None and not why.slower_only:
        raise BayesmixError(f"no marginal program for this model: {why}")
    program = marginal_program(design, priors)
    data = marginal_stan_data(design, priors, prior_only=prior_only,
                              save_log_lik=save_log_lik, save_y_rep=save_y_rep)
    from .fit import sample_program
    return sample_program(MarginalPosteriorFit, design, priors, program, data, inits=inits,
                          engine=engine, diagnostics=diagnostics, chains=chains,
                          iter_warmup=iter_warmup, iter_sampling=iter_sampling, seed=seed,
                          adapt_delta=adapt_delta, max_treedepth=max_treedepth, metric=metric,
                          thin=thin, show_progress=show_progress, output_dir=output_dir)


def choose_program(design, priors: Iterable[Prior] = (), program: str = "auto",
                   centered: Any = False) -> tuple[str, Unsupported | None]:
    """("marginal" | "joint", why the joint program was chosen under "auto" or None).
    "generic" and "generated" are joint programs (see bayesmix.bayes.generic)."""
    program = (program or "auto").lower()
    if program not in PROGRAMS:
        raise BayesmixError(f"unknown program {program!r}; choose one of {', '.join(PROGRAMS)}")
    if program in ("joint", "generic", "generated"):
        return "joint", None
    why = marginal_unsupported(design, priors, centered)
    if program == "marginal":
        if why is not None and not why.slower_only:
            raise BayesmixError(f"program='marginal' is not available: {why}")
        return "marginal", None
    return ("joint", why) if why is not None else ("marginal", None)


__all__ = ["DENSE_LIMIT", "SLOWER_ONLY", "MarginalLayout", "MarginalPosteriorFit",
           "MarginalProgram", "Unsupported",
           "PROGRAMS", "choose_program", "cholesky_corr", "draw_random_effects", "fit_marginal",
           "marginal_layout", "marginal_log_density", "marginal_loglik", "marginal_priors",
           "marginal_program", "marginal_stan_data", "marginal_stancode",
           "marginal_unsupported"]
