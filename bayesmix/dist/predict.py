"""From the parameters of a distributional model to its predictions: the one home of this
maths for both fits (Laplace ML: one set of estimates, S = 1; NUTS: S draws).

`DistParams` holds the parameters: fixed effects per distributional parameter (dpar), the
group-level effects per term of ``design.terms`` and, for cumulative models, the cutpoints,
each with a leading draw axis S. From them and a `DistDesign`:

* `linpred`: each predictor's linear predictor (link scale, offset in mu), (S, n) per dpar;
* `dpars`: the same on the natural scale (mu through the family's inverse link, the others
  through their `DPAR_LINKS` inverse; a cumulative model's mu stays its linear predictor);
* `epred`: E y (beta_binomial: expected successes; cumulative: the expected category number
  1..K) and `variance`: Var y, both by `Family.moments`; `epred_categories`: a cumulative
  model's category probabilities (S, n, K);
* `log_lik`: log p(y_i | parameters, group-level effects) at the data, (S, n);
* `simulate`: one response per draw and row by `Family.draw`.

Rows are the design's own (newdata=None) or new ones: each predictor's fixed-effect columns
are rebuilt from its training `ModelMatrixSpec`, each term's level index and Z as for lme4
models (bayesmix.design.newdata), the offset of mu from newdata. ``re_form`` picks the
grouping factors as lme4 does: None all, NA / "~0" / False none (population level),
"~(1 | g)" those named (every predictor's terms of g). Levels unseen in training are a
DataError naming them unless ``allow_new_levels=True``; their effects then follow
``sample_new_levels``:

* None / "none" (the default): zero, i.e. the population-level prediction for those rows (what
  lme4 and the ML fits give);
* "uncertainty" (brms's default): per draw, the effect of a randomly chosen training level;
* "old_levels": each new level takes all draws of one randomly chosen training level;
* "gaussian": per draw, a new effect from N(0, Sigma) of that draw: needs `DistParams.sd`
  (and `.cor` for correlated terms).

A new level's effect is shared by all its rows within one call; the terms of different
predictors (mu's (1 | g) and zi's (1 | g)) are independent, as in brms without ``|ID|``.
The random choices use ``rng`` (a numpy Generator or a seed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..bayes.predict import NEW_LEVEL_MODES, new_level_mode
from ..design.columns import evaluate_column, numeric_column
from ..design.dist import DistDesign
from ..design.factors import new_group_labels
from ..design.modelmatrix import names_in_expression
from ..design.newdata import (check_new_columns, new_fixed_matrix, new_term_data,
                              term_columns)
from ..design.reform import re_form_groups
from ..errors import BayesmixError, DataError
from ..families import dpar_linkinv
from ..formula import parse_formula



# ---------------------------------------------------------------- parameters


def _float(value, what: str, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"DistParams.{what} must be numbers, not {type(value).__name__}") from None
    if arr.ndim != ndim:
        raise DataError(f"DistParams.{what} must have {ndim} axes (draws first), "
                        f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"DistParams.{what} has non-finite values")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class DistParams:
    """Parameters of a distributional model, S draws (S = 1 for point estimates).

    beta: dpar -> (S, k_d) fixed effects in that `Predictor.X_names` order (link scale);
    ranef: per term of ``design.terms`` (predictor by predictor), (S, n_levels, p) effects in
        the term's level and coefficient order;
    cutpoints: cumulative models' (S, K - 1) increasing cutpoints, else None;
    sd, cor: optional, per term (S, p) group-level SDs and (S, p, p) correlation matrices
        (None for uncorrelated terms), needed only by ``sample_new_levels="gaussian"``.

    Construction checks the axes and that every value is finite; `check` (called by every
    function of this module) checks the shapes against a design."""

    beta: Mapping[str, np.ndarray]
    ranef: tuple[np.ndarray, ...] = ()
    cutpoints: np.ndarray | None = None
    sd: tuple[np.ndarray, ...] | None = None
    cor: tuple[np.ndarray | None, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.beta, Mapping):
            raise DataError("DistParams.beta must be a dict dpar -> (S, k) array, not "
                            f"{type(self.beta).__name__}")
        beta = {str(k): _float(v, f"beta[{k!r}]", 2) for k, v in self.beta.items()}
        ranef = tuple(_float(r, f"ranef[{k}]", 3) for k, r in enumerate(self.ranef))
        cut = None if self.cutpoints is None else _float(self.cutpoints, "cutpoints", 2)
        sd = (None if self.sd is None
              else tuple(_float(s, f"sd[{k}]", 2) for k, s in enumerate(self.sd)))
        cor = (None if self.cor is None
               else tuple(None if c is None else _float(c, f"cor[{k}]", 3)
                          for k, c in enumerate(self.cor)))
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "ranef", ranef)
        object.__setattr__(self, "cutpoints", cut)
        object.__setattr__(self, "sd", sd)
        object.__setattr__(self, "cor", cor)
        sizes = {f"beta[{k!r}]": v.shape[0] for k, v in beta.items()}
        sizes.update({f"ranef[{k}]": r.shape[0] for k, r in enumerate(ranef)})
        if cut is not None:
            sizes["cutpoints"] = cut.shape[0]
        for k, s in enumerate(sd or ()):
            sizes[f"sd[{k}]"] = s.shape[0]
        for k, c in enumerate(cor or ()):
            if c is not None:
                sizes[f"cor[{k}]"] = c.shape[0]
        if not sizes:
            raise DataError("DistParams has no parameters (beta is empty)")
        if len(set(sizes.values())) > 1:
            raise DataError("DistParams: every parameter needs the same number of draws S "
                            "(first axis); got " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
        if cut is not None and np.any(~(np.diff(cut, axis=1) > 0)):
            s = int(np.nonzero(np.any(~(np.diff(cut, axis=1) > 0), axis=1))[0][0])
            raise DataError(f"DistParams.cutpoints must increase strictly; draw {s} has "
                            f"{cut[s].tolist()}")
        for k, s in enumerate(sd or ()):
            if np.any(s < 0):
                raise DataError(f"DistParams.sd[{k}] has negative standard deviations")

    @property
    def S(self) -> int:
        """The number of draws."""
        return next(iter(self.beta.values())).shape[0]

    @classmethod
    def point(cls, beta: Mapping[str, Any], ranef=(), cutpoints=None, sd=None,
              cor=None) -> DistParams:
        """One set of estimates (S = 1): beta[dpar] (k_d,), ranef (n_levels, p) per term,
        cutpoints (K - 1,), sd (p,) and cor (p, p) per term."""
        def one(a):
            return None if a is None else np.asarray(a, dtype=float)[None]
        return cls({k: one(v) for k, v in beta.items()}, tuple(one(r) for r in ranef),
                   one(cutpoints), None if sd is None else tuple(one(s) for s in sd),
                   None if cor is None else tuple(one(c) for c in cor))

    @classmethod
    def from_stacked(cls, design: DistDesign, b, r_all=None, cutpoints=None, sd=None,
                     cor=None) -> DistParams:
        """From the two programs' layout (contract; dist_stan_data): b (S, K_all) = the
        predictors' fixed effects side by side in predictor order, r_all (S, sum of
        n_levels * p) = term by term, level by level, a level's p coefficients together.
        1-D b / r_all / cutpoints are one draw."""
        b = np.asarray(b, dtype=float)
        b = b[None] if b.ndim == 1 else b
        S = b.shape[0]
        k_all = sum(len(p.X_names) for p in design.predictors)
        if b.ndim != 2 or b.shape[1] != k_all:
            raise DataError(f"b must be (S, {k_all}) (the predictors' fixed effects side by "
                            f"side), got shape {b.shape}")
        beta, at = {}, 0
        for p in design.predictors:
            beta[p.dpar] = b[:, at:at + len(p.X_names)]
            at += len(p.X_names)
        terms = design.terms
        r_len = sum(t.n_levels * t.p for t in terms)
        r = np.zeros((S, 0)) if r_all is None else np.asarray(r_all, dtype=float)
        r = r[None] if r.ndim == 1 else r
        if r.shape != (S, r_len):
            raise DataError(f"r_all must be (S, {r_len}) = (draws, sum over terms of levels x "
                            f"coefficients) with S = {S}, got shape {r.shape}")
        ranef, at = [], 0
        for t in terms:
            ranef.append(r[:, at:at + t.n_levels * t.p].reshape(S, t.n_levels, t.p))
            at += t.n_levels * t.p
        if cutpoints is not None:
            cutpoints = np.asarray(cutpoints, dtype=float)
            cutpoints = cutpoints[None] if cutpoints.ndim == 1 else cutpoints
        return cls(beta, tuple(ranef), cutpoints, sd, cor).check(design)

    def check(self, design: DistDesign) -> DistParams:
        """DataError naming the culprit unless the shapes fit `design`; returns self."""
        if not isinstance(design, DistDesign):
            raise DataError(f"expected a DistDesign, not {type(design).__name__}")
        want = [p.dpar for p in design.predictors]
        missing = [d for d in want if d not in self.beta]
        extra = [d for d in self.beta if d not in want]
        if missing or extra:
            raise DataError(
                "DistParams.beta " + "; ".join(
                    ([f"lacks {', '.join(map(repr, missing))}"] if missing else [])
                    + ([f"has {', '.join(map(repr, extra))}, which the model does not have"]
                       if extra else []))
                + f" (the model's predictors: {', '.join(want)})")
        S = self.S
        for p in design.predictors:
            got = self.beta[p.dpar].shape
            if got[1] != len(p.X_names):
                raise DataError(f"DistParams.beta[{p.dpar!r}] has shape {got}; expected "
                                f"({S}, {len(p.X_names)}) for the columns "
                                f"{', '.join(p.X_names) or '(none)'}")
        terms = design.terms
        names = [f"({' + '.join(t.coef_names)} | {t.group}) of {design.predictors[d].dpar}"
                 for t, d in zip(terms, design.term_predictor)]
        if len(self.ranef) != len(terms):
            raise DataError(f"DistParams.ranef has {len(self.ranef)} terms; the model has "
                            f"{len(terms)}: {', '.join(names) or 'none'}")
        for k, (t, r) in enumerate(zip(terms, self.ranef)):
            if r.shape[1:] != (t.n_levels, t.p):
                raise DataError(f"DistParams.ranef[{k}] (term {names[k]}) has shape {r.shape}; "
                                f"expected ({S}, {t.n_levels}, {t.p}) = (draws, levels, "
                                "coefficients)")
        if design.family.name == "cumulative":
            K = len(design.categories)
            if self.cutpoints is None or self.cutpoints.shape[1] != K - 1:
                got = None if self.cutpoints is None else self.cutpoints.shape
                raise DataError(f"DistParams.cutpoints must be ({S}, {K - 1}) for the {K} "
                                f"categories of the cumulative model, got {got}")
        elif self.cutpoints is not None:
            raise DataError(f"DistParams.cutpoints given, but a {design.family} model has none")
        for what, values, shape in (("sd", self.sd, lambda t: (t.p,)),
                                    ("cor", self.cor, lambda t: (t.p, t.p))):
            if values is None:
                continue
            if len(values) != len(terms):
                raise DataError(f"DistParams.{what} has {len(values)} terms; the model has "
                                f"{len(terms)}")
            for k, (t, v) in enumerate(zip(terms, values)):
                if v is not None and v.shape[1:] != shape(t):
                    raise DataError(f"DistParams.{what}[{k}] (term {names[k]}) has shape "
                                    f"{v.shape}; expected ({S}, {', '.join(map(str, shape(t)))})")
        return self


# ---------------------------------------------------------------- rows


@dataclass(frozen=True, eq=False)
class _Rows:
    n: int
    X: tuple[np.ndarray, ...]          # per predictor (n, k_d)
    terms: tuple[tuple | None, ...]    # per design term: (index, Z, labels) or None if left out
    offset: np.ndarray | None


def _groups(re_form: Any, design: DistDesign) -> set[str]:
    if re_form is False:
        return set()
    if re_form is not None and not isinstance(re_form, str) and np.ndim(re_form) == 0:
        try:
            if pd.isna(re_form):  # NA, NaN, pd.NA
                return set()
        except (TypeError, ValueError):
            pass
    return re_form_groups(re_form, design)


def _offset_expr(design: DistDesign) -> str | None:
    return parse_formula(design.formula.formula, design.transforms).offset


def _rows(design: DistDesign, newdata, groups: set[str], allow_new_levels: bool) -> _Rows:
    terms = design.terms
    if newdata is None:
        return _Rows(design.n, tuple(p.X for p in design.predictors),
                     tuple((t.index, t.Z, None) if t.group in groups else None for t in terms),
                     design.offset)
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"new data must be a pandas DataFrame, not {type(newdata).__name__}")
    if len(newdata) == 0:
        raise DataError("new data has no rows")
    offset_expr = _offset_expr(design)
    needed = [c for p in design.predictors for c in p.fixed_spec.columns]
    for t in terms:
        if t.group in groups:  # lme4: the columns of terms left out are not needed
            needed += term_columns(t)
    if offset_expr is not None:
        needed += [c for c in names_in_expression(offset_expr) if c in design.data.columns]
    check_new_columns(newdata, needed)
    X = []
    for p in design.predictors:
        Xp = np.asarray(new_fixed_matrix(p.fixed_spec, p.X_names, newdata), dtype=float)
        bad = [nm for j, nm in enumerate(p.X_names) if not np.all(np.isfinite(Xp[:, j]))]
        if bad:
            where = "fixed-effects part" if p.dpar == "mu" else f"{p.dpar} formula"
            raise DataError(f"new data: column(s) {', '.join(map(repr, bad))} of the {where} "
                            "have non-finite values")
        X.append(Xp)
    rows = []
    for t in terms:
        if t.group not in groups:
            rows.append(None)
            continue
        nt = new_term_data(t, newdata, allow_new_levels)
        labels = (np.asarray(new_group_labels(newdata, t.group), dtype=object)
                  if np.any(nt.index < 0) else None)
        Z = np.asarray(nt.Z, dtype=float)
        if not np.all(np.isfinite(Z)):
            raise DataError(f"new data: the covariates of the term ({' + '.join(t.coef_names)} "
                            f"| {t.group}) have non-finite values")
        rows.append((nt.index, Z, labels))
    offset = None
    if offset_expr is not None:
        offset = numeric_column(evaluate_column(offset_expr, newdata, "offset",
                                                design.transforms), offset_expr, "offset")
        if not np.all(np.isfinite(offset)):
            raise DataError(f"new data: the offset {offset_expr!r} has non-finite values")
    return _Rows(len(newdata), tuple(X), tuple(rows), offset)


def _new_effects(params: DistParams, k: int, t, n_new: int, mode: str,
                 rng: np.random.Generator) -> np.ndarray:
    """Effects (S, n_new, p) of n_new new levels of term k (0-based) per draw."""
    r = params.ranef[k]
    S, n_levels, p = r.shape
    if mode == "none":
        return np.zeros((S, n_new, p))
    if mode == "uncertainty":
        return r[np.arange(S)[:, None], rng.integers(n_levels, size=(S, n_new))]
    if mode == "old_levels":
        return r[:, rng.integers(n_levels, size=n_new)]
    if params.sd is None:
        raise DataError("sample_new_levels='gaussian' needs the group-level SDs of each draw "
                        "(DistParams.sd, and .cor for correlated terms)")
    sd = params.sd[k]
    z = rng.standard_normal((S, n_new, p))
    cor = None if params.cor is None else params.cor[k]
    if t.correlated and p > 1:
        if cor is None:
            raise DataError(f"sample_new_levels='gaussian' needs the correlations of the "
                            f"correlated term ({' + '.join(t.coef_names)} | {t.group}) "
                            "(DistParams.cor)")
        L = np.linalg.cholesky(cor + 1e-12 * np.eye(p))
        return np.einsum("sij,snj->sni", sd[:, :, None] * L, z)  # Cov = diag(sd) Cor diag(sd)
    return z * sd[:, None, :]


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ---------------------------------------------------------------- predictions


def linpred(design: DistDesign, params: DistParams, newdata: pd.DataFrame | None = None,
            re_form: Any = None, allow_new_levels: bool = False,
            sample_new_levels: Any = None, rng=None) -> dict[str, np.ndarray]:
    """Linear predictors (link scale) of every predictor: dpar -> (S, n); mu's includes the
    offset. See the module doc for newdata, re_form and new levels."""
    params.check(design)
    groups = _groups(re_form, design)
    mode = new_level_mode(sample_new_levels)
    rows = _rows(design, newdata, groups, allow_new_levels)
    gen = None
    out = {}
    for p, X in zip(design.predictors, rows.X):
        out[p.dpar] = params.beta[p.dpar] @ np.asarray(X, dtype=float).reshape(rows.n, -1).T
    if rows.offset is not None:
        out["mu"] = out["mu"] + np.asarray(rows.offset, dtype=float)[None, :]
    for k, (t, d, row) in enumerate(zip(design.terms, design.term_predictor, rows.terms)):
        if row is None:
            continue
        index, Z, labels = row
        Z = np.asarray(Z, dtype=float).reshape(rows.n, -1)
        r = params.ranef[k]
        eta = out[design.predictors[d].dpar]
        known = index >= 0
        if np.all(known):
            for m in range(t.p):  # one (S, n) gather per coefficient: no (S, n, p) temporary
                eta += r[:, index, m] * Z[:, m]
            continue
        idx = np.where(known, index, 0)
        for m in range(t.p):
            eta += np.where(known, r[:, idx, m] * Z[:, m], 0.0)  # new levels: 0 here
        if mode != "none":
            gen = gen or _rng(rng)
            new, which = np.unique(labels[~known].astype(str), return_inverse=True)
            u = _new_effects(params, k, t, len(new), mode, gen)  # (S, L, p)
            eta[:, ~known] += np.einsum("snp,np->sn", u[:, which], Z[~known])
    return out


def _natural(design: DistDesign, eta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fam = design.family
    out = {}
    for p in design.predictors:
        if p.dpar == "mu":
            out["mu"] = eta["mu"] if fam.name == "cumulative" else fam.linkinv(eta["mu"])
        else:
            out[p.dpar] = dpar_linkinv(p.link, eta[p.dpar])
    return out


def dpars(design: DistDesign, params: DistParams, newdata: pd.DataFrame | None = None,
          re_form: Any = None, allow_new_levels: bool = False, sample_new_levels: Any = None,
          rng=None) -> dict[str, np.ndarray]:
    """Every distributional parameter on its natural scale: dpar -> (S, n) (mu through the
    family's inverse link; a cumulative model's mu stays its linear predictor)."""
    return _natural(design, linpred(design, params, newdata, re_form, allow_new_levels,
                                    sample_new_levels, rng))


def _param_name(design: DistDesign, dpar: str) -> str:
    """The `Family.log_density` keyword of a dpar (negbinomial's brms shape is its phi)."""
    names = design.family.spec.params
    if dpar in names:
        return dpar
    if len(names) == 1:
        return names[0]
    raise DataError(f"{design.family} has no parameter {dpar!r}")


def _family_kwargs(design: DistDesign, params: DistParams, nat: dict) -> dict:
    kw = {_param_name(design, d): v for d, v in nat.items() if d != "mu"}
    if design.family.name == "cumulative":
        kw["cutpoints"] = params.cutpoints[:, None, :]  # (S, 1, K - 1) against mu (S, n)
    return kw


def _trials(design: DistDesign, newdata, trials, what: str) -> np.ndarray | float:
    """beta_binomial's trials of the rows (1.0 for the other families)."""
    if design.family.spec.support != "trials":
        if trials is not None:
            raise DataError(f"trials= is for beta_binomial models, not {design.family}")
        return 1.0
    n = design.n if newdata is None else len(newdata)
    if trials is not None:
        if isinstance(trials, str):
            source = design.data if newdata is None else newdata
            if trials not in source.columns:
                raise DataError(f"trials: no column {trials!r} in the data")
            t = numeric_column(source[trials], trials, "trials")
        else:
            t = np.array(np.broadcast_to(np.asarray(trials, dtype=float), (n,)))
        if t.shape != (n,):
            raise DataError(f"trials must have one value per row ({n}), got shape {t.shape}")
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
            raise DataError("trials must be non-negative whole numbers")
        return t
    if newdata is None:
        return np.asarray(design.trials, dtype=float)
    cb = parse_formula(design.formula.formula, design.transforms).cbind
    names = [c for e in cb for c in names_in_expression(e) if c in design.data.columns]
    if any(c not in newdata.columns for c in names):
        raise DataError(f"beta_binomial {what} for new data need the number of trials: pass "
                        f"trials= (an array or a column name) or include the columns "
                        f"{', '.join(map(repr, dict.fromkeys(names)))} of "
                        f"cbind({', '.join(cb)})")
    check_new_columns(newdata, names)
    succ = numeric_column(evaluate_column(cb[0], newdata, "response", design.transforms),
                          cb[0], "successes")
    fail = numeric_column(evaluate_column(cb[1], newdata, "response", design.transforms),
                          cb[1], "failures")
    t = np.asarray(succ + fail, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
        raise DataError(f"new data: the trials cbind({', '.join(cb)}) must be non-negative "
                        "whole numbers")
    return t


def _moments(design, params, newdata, re_form, allow_new_levels, sample_new_levels, rng,
             trials):
    nat = dpars(design, params, newdata, re_form, allow_new_levels, sample_new_levels, rng)
    t = _trials(design, newdata, trials, "expected values")
    return design.family.moments(nat["mu"], t, **_family_kwargs(design, params, nat))


def epred(design: DistDesign, params: DistParams, newdata: pd.DataFrame | None = None,
          re_form: Any = None, allow_new_levels: bool = False, sample_new_levels: Any = None,
          rng=None, trials=None) -> np.ndarray:
    """Expected response (S, n): E y given the parameters (beta_binomial: expected successes
    out of the rows' trials -- the data's, ``trials=`` or newdata's cbind() columns;
    cumulative: the expected category number sum_k k P(y = k), k = 1..K; student: nan where
    nu <= 1)."""
    return np.asarray(_moments(design, params, newdata, re_form, allow_new_levels,
                               sample_new_levels, rng, trials)[0], dtype=float)


def variance(design: DistDesign, params: DistParams, newdata: pd.DataFrame | None = None,
             re_form: Any = None, allow_new_levels: bool = False, sample_new_levels: Any = None,
             rng=None, trials=None) -> np.ndarray:
    """Var y (S, n) given the parameters (inf or nan where it does not exist: student
    nu <= 2; cumulative: the variance of the category number)."""
    return np.asarray(_moments(design, params, newdata, re_form, allow_new_levels,
                               sample_new_levels, rng, trials)[1], dtype=float)


def epred_categories(design: DistDesign, params: DistParams,
                     newdata: pd.DataFrame | None = None, re_form: Any = None,
                     allow_new_levels: bool = False, sample_new_levels: Any = None,
                     rng=None) -> np.ndarray:
    """A cumulative model's category probabilities P(y = k), (S, n, K), k in
    ``design.categories`` order."""
    if design.family.name != "cumulative":
        raise DataError(f"epred_categories is for cumulative models, not {design.family}")
    eta = linpred(design, params, newdata, re_form, allow_new_levels, sample_new_levels,
                  rng)["mu"]
    kw = _family_kwargs(design, params, {"mu": eta})
    return np.stack([np.exp(design.family.log_density(np.full(eta.shape, float(k)), eta, **kw))
                     for k in range(1, len(design.categories) + 1)], axis=-1)


def log_lik(design: DistDesign, params: DistParams) -> np.ndarray:
    """Pointwise log-likelihood (S, n) at the data, conditional on the group-level effects:
    log p(y_i | parameters of draw s), every constant included (`Family.log_density`)."""
    nat = dpars(design, params)
    t = 1.0 if design.trials is None else np.asarray(design.trials, dtype=float)
    return np.asarray(design.family.log_density(np.asarray(design.y, dtype=float)[None, :],
                                                nat["mu"], t,
                                                **_family_kwargs(design, params, nat)),
                      dtype=float)


def simulate(design: DistDesign, params: DistParams, rng=None,
             newdata: pd.DataFrame | None = None, re_form: Any = None,
             allow_new_levels: bool = False, sample_new_levels: Any = None,
             trials=None) -> np.ndarray:
    """One simulated response per draw and row (S, n) by `Family.draw` (beta_binomial:
    successes out of the trials as in `epred`; cumulative: categories 1..K). ``rng`` (a
    Generator or a seed) draws new levels' effects first, then the responses."""
    gen = _rng(rng)
    nat = dpars(design, params, newdata, re_form, allow_new_levels, sample_new_levels, gen)
    t = _trials(design, newdata, trials, "simulations")
    out = design.family.draw(gen, nat["mu"], t, **_family_kwargs(design, params, nat))
    return np.asarray(np.broadcast_to(out, nat["mu"].shape), dtype=float)


__all__ = ["NEW_LEVEL_MODES", "DistParams", "dpars", "epred", "epred_categories", "linpred",
           "log_lik", "simulate", "variance"]
