"""NUTS for distributional models (issue #17): ``stan/dist_nuts.stan``.

One compiled program serves every distributional model: the family, the links, each
predictor's fixed effects and group-level terms (`bayesmix.design.dist.dist_stan_data`) and
every prior (codes of `bayesmix.priors.PRIOR_CODES`) arrive as data. Parameterisation as brms:
centred slopes with the intercepts restored, non-centred group-level effects, LKJ-Cholesky
correlations, ordered cutpoints at the centred predictor (restored as clmm's theta).

Priors (brms's defaults, docs/families.md "Fitting distributional models by NUTS"):

* mu: ``Intercept ~ student_t(3, m, s)``, brms's rule (`mu_intercept_scale`): for links
  identity, log, inverse and sqrt the median and max(2.5, mad) of the response on the link
  scale (lognormal: of log y), else m = 0, s = 2.5; flat ``b``; ``sd ~ student_t(3, 0, s)``
  (half); cumulative cutpoints ``student_t(3, 0, 2.5)`` each (class Intercept, coef
  "1".."K-1").
* other predictors (sigma, nu, phi, shape: log or logm1 link; zi, hu: logit): intercept
  ``student_t(3, 0, 2.5)`` (zi / hu: ``logistic(0, 1)``, i.e. a uniform zi when constant),
  flat ``b``, ``sd ~ student_t(3, 0, 2.5)`` (half); a constant nu (no formula):
  ``nu ~ gamma(2, 0.1)`` on nu itself, as brms.
* ``cor``: ``lkj(1)``.

User priors: ``prior(dist, cls, coef=, group=, dpar=)``; dpar None (or "mu") is the main
formula; ``cls="sigma"`` / ``"nu"`` / ``"phi"`` / ``"shape"`` without dpar puts a prior on a
constant parameter's natural scale (its log Jacobian is added in Stan)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..design.dist import DIST_LINK_CODES, DistDesign, dist_stan_data
from ..errors import BayesmixError
from ..families import LINKS
from ..priors import PRIOR_CODES, Prior, PriorError
from ..bayes.fit import (PosteriorFit, PosteriorSummary, _convergence, _qcols, _summarise,
                         check_sampler_args)

DIST_NUTS_PROGRAM = "dist_nuts.stan"
DIST_NUTS_NAME = "dist_nuts"
# constant parameters a natural-scale prior may target (class = the parameter's name)
NATURAL_CLASSES = ("sigma", "phi", "shape", "nu")


def dist_nuts_code() -> str:
    """The NUTS program of distributional models, self-contained (what is compiled)."""
    from ..engine import stan_file
    return stan_file(DIST_NUTS_PROGRAM)


# ---------------------------------------------------------------- names


def coef_label(dpar: str, column: str) -> str:
    """brms's row name of a population-level coefficient: Intercept, x, sigma_Intercept."""
    col = "Intercept" if column == "(Intercept)" else column
    return col if dpar == "mu" else f"{dpar}_{col}"


def _term_coef(dpar: str, coef: str) -> str:
    c = "Intercept" if coef == "(Intercept)" else coef
    return c if dpar == "mu" else f"{dpar}_{c}"


# ---------------------------------------------------------------- priors


@dataclass(frozen=True)
class DistPriorSlot:
    """One scalar (or one LKJ matrix) of the program that gets a prior."""

    cls: str                  # Intercept (cutpoints too), b, sd, cor
    dpar: str                 # predictor ("mu", "sigma", ...)
    coef: str | None
    group: str | None
    row: int | None           # 0-based prior row (beta, sd_all, cutpoints), None for cor
    term: int | None          # 0-based term (sd, cor)
    default: tuple[str, tuple[float, ...], int]  # (dist, args, natural-scale link code or 0)
    constant: bool = False    # the intercept of a constant (unmodelled) dpar
    user: Prior | None = None

    @property
    def source(self) -> str:
        return "default" if self.user is None else "user"

    @property
    def label(self) -> str:
        """The class shown: a natural-scale prior shows the parameter's name (nu)."""
        natural = (self.user.cls in NATURAL_CLASSES) if self.user is not None \
            else bool(self.default[2])
        return self.dpar if natural else self.cls


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def mu_intercept_scale(design: DistDesign) -> tuple[float, float]:
    """(location, scale) of mu's default intercept prior, brms's rule (def_scale_prior):
    for links identity, log, inverse and sqrt, the median and max(2.5, mad) of the response
    on the link scale (zeros taken as 0.1 under log and inverse; lognormal: of log y), both
    rounded to 1 decimal; other links (logit, probit, cloglog) and cumulative: (0, 2.5).
    The scale is also the default of mu's group-level SDs."""
    fam = design.family
    y = np.asarray(design.y, dtype=float)
    link = "identity" if fam.name == "lognormal" else fam.link
    if fam.name == "lognormal":
        y = np.log(y)
    if fam.name == "cumulative" or link not in ("identity", "log", "inverse", "sqrt"):
        return 0.0, 2.5
    if link in ("log", "inverse"):
        y = np.where(y == 0, 0.1, y)
    with np.errstate(all="ignore"):
        ly = np.asarray(LINKS[link].linkfun(y), dtype=float)
    loc, mad = float(np.median(ly)), _mad(ly)
    loc = round(loc, 1) if math.isfinite(loc) else 0.0
    return loc, max(2.5, round(mad, 1) if math.isfinite(mad) else 0.0)


def _is_constant(p) -> bool:
    return not p.modelled and not p.terms and p.X_names == ("(Intercept)",)


def _slots(design: DistDesign) -> list[DistPriorSlot]:
    loc, scale = mu_intercept_scale(design)
    slots: list[DistPriorSlot] = []
    row = 0
    for p in design.predictors:
        mu = p.dpar == "mu"
        constant = p.dpar != "mu" and _is_constant(p)
        for name in p.X_names:
            if name == "(Intercept)":
                if mu:
                    default = ("student_t", (3.0, loc, scale), 0)
                elif p.link == "logit":
                    default = ("logistic", (0.0, 1.0), 0)
                elif p.dpar == "nu" and constant:
                    default = ("gamma", (2.0, 0.1), DIST_LINK_CODES[p.link])
                else:
                    default = ("student_t", (3.0, 0.0, 2.5), 0)
                slots.append(DistPriorSlot("Intercept", p.dpar, None, None, row, None, default,
                                           constant))
            else:
                slots.append(DistPriorSlot("b", p.dpar, name, None, row, None,
                                           ("flat", (), 0)))
            row += 1
    s_row = 0
    r_offset = row
    for k, (t, d) in enumerate(zip(design.terms, design.term_predictor)):
        dpar = design.predictors[d].dpar
        sd_scale = scale if dpar == "mu" else 2.5
        for c in t.coef_names:
            slots.append(DistPriorSlot("sd", dpar, c, t.group, r_offset + s_row, k,
                                       ("student_t", (3.0, 0.0, sd_scale), 0)))
            s_row += 1
    row = r_offset + s_row
    for j in range(max(len(design.categories) - 1, 0)):
        slots.append(DistPriorSlot("Intercept", "mu", str(j + 1), None, row, None,
                                   ("student_t", (3.0, 0.0, 2.5), 0)))
        row += 1
    for k, (t, d) in enumerate(zip(design.terms, design.term_predictor)):
        if t.correlated and t.p > 1:
            slots.append(DistPriorSlot("cor", design.predictors[d].dpar, None, t.group, None, k,
                                       ("lkj", (1.0,), 0)))
    return slots


def _matches(p: Prior, s: DistPriorSlot) -> int:
    """-1 if prior p does not apply to slot s, else its specificity (larger wins)."""
    if p.cls in NATURAL_CLASSES:
        return 8 if (s.constant and p.dpar is None and p.cls == s.dpar) else -1
    if (p.dpar or "mu") != s.dpar or p.cls != s.cls:
        return -1
    if p.coef is not None and p.coef != s.coef:
        return -1
    if p.group is not None and p.group != s.group:
        return -1
    return 2 * (p.coef is not None) + (p.group is not None)


def _check_prior(p: Prior, design: DistDesign, slots: list[DistPriorSlot]) -> None:
    fam = design.family
    dpars = [q.dpar for q in design.predictors]
    if not isinstance(p, Prior):
        raise PriorError(f"priors must be made with bayesmix.priors.prior(...), got "
                         f"{type(p).__name__}: {p!r}")
    if p.dpar is not None and p.dpar not in dpars:
        raise PriorError(f"{p}: family {fam.name!r} has no distributional parameter "
                         f"{p.dpar!r}; its parameters are: {', '.join(dpars)}")
    if p.cls in NATURAL_CLASSES:
        if p.cls not in dpars:
            raise PriorError(f"{p}: family {fam.name!r} has no parameter {p.cls!r}; its "
                             f"parameters are: {', '.join(dpars)}")
        if not any(_matches(p, s) >= 0 for s in slots):
            raise PriorError(f"{p}: {p.cls} is modelled by a formula (its own linear "
                             f"predictor); put priors on its coefficients instead: "
                             f"prior(..., cls='Intercept' | 'b' | 'sd', dpar={p.cls!r})")
        return
    dpar = p.dpar or "mu"
    mine = [s for s in slots if s.dpar == dpar]
    classes = sorted({s.cls for s in mine})
    if p.cls not in classes:
        raise PriorError(f"{p}: the {dpar} predictor has no parameters of class {p.cls!r}; "
                         f"its classes are: {', '.join(classes) or '(none)'}")
    pool = [s for s in mine if s.cls == p.cls]
    if p.group is not None and p.group not in {s.group for s in pool}:
        groups = sorted({s.group for s in pool if s.group})
        raise PriorError(f"{p}: no grouping factor {p.group!r} with class {p.cls!r} in the "
                         f"{dpar} predictor; valid groups: "
                         f"{', '.join(map(repr, groups)) or '(none)'}")
    if p.coef is not None:
        coefs = [s.coef for s in pool if p.group is None or s.group == p.group]
        if p.coef not in coefs:
            raise PriorError(f"{p}: no coefficient {p.coef!r} of class {p.cls!r} in the {dpar} "
                             f"predictor; valid coefs: "
                             f"{', '.join(repr(c) for c in coefs if c) or '(none)'}")
    if p.cls == "cor" and p.dist != "lkj":
        raise PriorError(f"{p}: class 'cor' takes an LKJ prior such as 'lkj(2)'")
    if p.dist == "flat" and p.cls not in ("Intercept", "b"):
        raise PriorError(f"{p}: an improper flat prior is allowed for Intercept and b only")
    if p.cls in ("Intercept", "b") and p.dist not in PRIOR_CODES:
        raise PriorError(f"{p}: {p.dist} has positive support; not a prior for class {p.cls!r}")


def resolve_dist_priors(design: DistDesign, priors: Iterable[Prior] = ()
                        ) -> list[DistPriorSlot]:
    """Every prior slot of a distributional model with the user prior in effect (the most
    specific wins: natural-scale class, coef and group, coef, group, class). Raises
    PriorError naming the culprit (an unknown dpar, class, coef or group) before anything
    compiles."""
    priors = list(priors)
    slots = _slots(design)
    seen: dict[tuple, Prior] = {}
    for p in priors:
        _check_prior(p, design, slots)
        key = (p.cls, p.coef, p.group, p.dpar)
        if key in seen:
            raise PriorError(f"duplicated prior specification: {seen[key]} and {p}")
        seen[key] = p
    out = []
    for s in slots:
        best, rank = None, -1
        for p in priors:
            r = _matches(p, s)
            if r > rank:
                best, rank = p, r
        out.append(DistPriorSlot(s.cls, s.dpar, s.coef, s.group, s.row, s.term, s.default,
                                 s.constant, best))
    return out


def _positive_slot(s: DistPriorSlot) -> bool:
    return s.cls == "sd" or (s.user is not None and s.user.cls in NATURAL_CLASSES)


def dist_prior_data(design: DistDesign, priors: Iterable[Prior] = ()) -> dict:
    """The prior data of stan/dist_nuts.stan (rows: beta, sd_all, cutpoints; prior_scale;
    lkj_eta)."""
    slots = resolve_dist_priors(design, priors)
    K_all = sum(p.X.shape[1] for p in design.predictors)
    rows = [s for s in slots if s.row is not None]
    n = len(rows)
    dist = [0] * n
    args = [[0.0, 0.0, 0.0] for _ in range(n)]
    scale = [0] * K_all
    for s in rows:
        if s.user is not None:
            name, a = s.user.dist, s.user.args
            if name == "flat" and _positive_slot(s):
                raise PriorError(f"{s.user}: an improper flat prior is not allowed here")
            natural = (DIST_LINK_CODES[design.predictor(s.dpar).link]
                       if s.user.cls in NATURAL_CLASSES else 0)
        else:
            name, a, natural = s.default
        if name == "lkj" or name not in PRIOR_CODES:
            raise PriorError(f"prior {name!r} cannot be used for class {s.cls!r}")
        dist[s.row] = PRIOR_CODES[name]
        args[s.row] = [float(x) for x in list(a) + [0.0] * (3 - len(a))]
        if s.row < K_all:
            scale[s.row] = natural
    eta = [1.0] * len(design.terms)
    for s in slots:
        if s.cls == "cor" and s.user is not None:
            eta[s.term] = float(s.user.args[0])
    return {"n_prior": n, "prior_dist": dist, "prior_args": args, "prior_scale": scale,
            "lkj_eta": eta}


def dist_prior_summary(design: DistDesign, priors: Iterable[Prior] = ()) -> pd.DataFrame:
    """Every prior in effect: prior, class, coef, group, dpar, source (sd and the natural-
    scale classes are truncated at 0, nu at 1)."""
    rows = []
    for s in resolve_dist_priors(design, priors):
        if s.user is not None:
            text = s.user.text
        else:
            name, a, _ = s.default
            text = name if name == "flat" else f"{name}({', '.join(f'{x:.4g}' for x in a)})"
        rows.append({"prior": text, "class": s.label, "coef": s.coef or "",
                     "group": s.group or "", "dpar": "" if s.dpar == "mu" else s.dpar,
                     "source": s.source})
    return pd.DataFrame(rows, columns=["prior", "class", "coef", "group", "dpar", "source"])


# ---------------------------------------------------------------- data and inits


def dist_nuts_data(design: DistDesign, priors: Iterable[Prior] = (), prior_only: bool = False,
                   save_log_lik: bool = True, save_y_rep: bool = True) -> dict:
    data = dist_stan_data(design)
    data.update(dist_prior_data(design, priors))
    data["prior_only"] = int(bool(prior_only))
    data["save_log_lik"] = int(bool(save_log_lik))
    data["save_y_rep"] = int(bool(save_y_rep))
    return data


def dist_nuts_inits(design: DistDesign) -> dict:
    """A safe start: every coefficient 0 except mu's intercept (the prior's location) and
    the scale of gaussian / student / lognormal (log sd of y on mu's scale); small SDs;
    cutpoints at the link's quantiles of the cumulative proportions (centred predictor)."""
    loc, _ = mu_intercept_scale(design)
    beta = []
    y = np.asarray(design.y, dtype=float)
    for p in design.predictors:
        for name in p.X_names:
            v = 0.0
            if name == "(Intercept)":
                if p.dpar == "mu":
                    v = loc
                elif p.dpar == "sigma" and y.size > 1:
                    ly = np.log(y) if design.family.name == "lognormal" else y
                    sd = float(np.std(ly, ddof=1))
                    v = math.log(sd) if sd > 0 and math.isfinite(sd) else 0.0
            beta.append(v)
    out: dict[str, Any] = {"beta": np.asarray(beta, dtype=float),
                           "sd_all": np.full(sum(t.p for t in design.terms), 0.5),
                           "z_all": np.zeros(sum(t.p * t.n_levels for t in design.terms)),
                           "cpc_raw": np.zeros(sum(t.p * (t.p - 1) // 2 for t in design.terms
                                                   if t.correlated and t.p > 1))}
    K = len(design.categories)
    if K:
        counts = np.array([(y == k).sum() for k in range(1, K + 1)], dtype=float) + 0.5
        cum = np.cumsum(counts)[:-1] / counts.sum()
        q = LINKS[design.family.link].linkfun(cum)
        q = np.maximum.accumulate(q + np.arange(K - 1) * 1e-3)  # strictly increasing
        out["cutpoints"] = q
    return out


# ---------------------------------------------------------------- the fit


@dataclass(frozen=True, eq=False)
class DistNutsProgram:
    """The program as a fit used it (what `sample_program` reads: code and name)."""

    code: str
    annotated: str

    @property
    def name(self) -> str:
        return DIST_NUTS_NAME

    def __str__(self) -> str:
        return self.annotated


def dist_nuts_program(design: DistDesign) -> DistNutsProgram:
    code = dist_nuts_code()
    lines = [f"Formula: {design.formula.formula.strip()}"]
    lines += [f"  {d} ~ {f.split('~', 1)[-1].strip()}" for d, f in design.formula.dpars]
    lines += [f"Family:  {design.family}", f"Data:    {design.n} observations",
              "Distributional NUTS program (stan/dist_nuts.stan): structure, family, links "
              "and priors are data.", "Stan names (b_all, beta: predictor blocks in order):"]
    pos = 0
    for p in design.predictors:
        for name in p.X_names:
            pos += 1
            lines.append(f"  b_all[{pos}] = {coef_label(p.dpar, name)}")
    annotated = "\n".join("// " + line for line in lines) + "\n" + code
    return DistNutsProgram(code, annotated)


class DistPosteriorFit(PosteriorFit):
    """A NUTS fit of a distributional model: brms-like tables per distributional parameter
    (`fixef`, `varcorr`, `ranef`, `summary`), `to_arviz`, `loo`, and the draws as
    `bayesmix.dist.predict.DistParams` (`params`) behind `predict`, `epred`, `linpred`,
    `log_lik` and `simulate`."""

    kind = "dist_nuts"  # its bundles' kind (bayesmix.bundle; restored by _restore_bundle)
    program_kind = "dist"

    # -- raw access -------------------------------------------------------------
    @property
    def stan_code(self) -> str:
        return self.program.code

    def draws(self, name: str) -> np.ndarray:
        """A Stan variable's draws as ``(chain, draw, *shape)``; size-0 variables (absent
        from Stan's CSV) as empty arrays."""
        sizes = {"b_all": self.stan_data["K_all"], "beta": self.stan_data["K_all"],
                 "sd_all": self.stan_data["R"], "Cor_all": self._n_cor,
                 "b_cutpoints": self._n_cut, "cutpoints": self._n_cut,
                 "z_all": self._n_z, "r_all": self._n_z, "cpc_raw": self._n_cpc}
        if sizes.get(name, 1) == 0:
            return np.zeros((self.chains, self.ndraws, 0))
        return PosteriorFit.draws(self, name)

    @property
    def _n_cut(self) -> int:
        return max(self.stan_data["n_cat"] - 1, 0) if self.stan_data["family"] == 6 else 0

    @property
    def _n_z(self) -> int:
        return int(sum(t.p * t.n_levels for t in self.design.terms))

    @property
    def _n_cpc(self) -> int:
        return int(sum(t.p * (t.p - 1) // 2 for t in self.design.terms
                       if t.correlated and t.p > 1))

    @property
    def _n_cor(self) -> int:
        return int(sum(t.p * t.p for t in self.design.terms if t.correlated and t.p > 1))

    def _flat(self, arr: np.ndarray) -> np.ndarray:
        """(chain, draw, ...) -> (chain * draw, ...), chain by chain."""
        return arr.reshape((-1,) + arr.shape[2:])

    # -- parameters by name ---------------------------------------------------------
    @cached_property
    def _coef(self) -> dict[str, np.ndarray]:
        """dpar -> (chain, draw, k_d) population-level coefficients (intercepts restored)."""
        b = self.draws("b_all")
        out, pos = {}, 0
        for p in self.design.predictors:
            k = p.X.shape[1]
            out[p.dpar] = b[..., pos:pos + k]
            pos += k
        return out

    @cached_property
    def _ranef(self) -> list[np.ndarray]:
        """Per term: (chain, draw, n_levels, p)."""
        r = self.draws("r_all")
        out, pos = [], 0
        for t in self.design.terms:
            size = t.p * t.n_levels
            out.append(r[..., pos:pos + size].reshape(r.shape[:2] + (t.n_levels, t.p)))
            pos += size
        return out

    @cached_property
    def _sd(self) -> list[np.ndarray]:
        s = self.draws("sd_all")
        out, pos = [], 0
        for t in self.design.terms:
            out.append(s[..., pos:pos + t.p])
            pos += t.p
        return out

    @cached_property
    def _cor(self) -> list[np.ndarray | None]:
        c = self.draws("Cor_all")
        out, pos = [], 0
        for t in self.design.terms:
            if t.correlated and t.p > 1:
                m = c[..., pos:pos + t.p * t.p].reshape(c.shape[:2] + (t.p, t.p))
                out.append(np.swapaxes(m, -1, -2))
                pos += t.p * t.p
            else:
                out.append(None)
        return out

    def cutpoints(self) -> np.ndarray | None:
        """(chain, draw, K - 1) thresholds at the uncentred predictor (clmm's theta)."""
        return self.draws("b_cutpoints") if self._n_cut else None

    def _constants(self) -> dict[str, np.ndarray]:
        """The constant (unmodelled) parameters on their natural scale: (chain, draw)."""
        from ..families import dpar_linkinv
        out = {}
        for p in self.design.predictors[1:]:
            if not p.modelled and not p.terms and p.X_names == ("(Intercept)",):
                out[p.dpar] = dpar_linkinv(p.link, self._coef[p.dpar][..., 0])
        return out

    # -- tables -----------------------------------------------------------------------
    def _row(self, arr: np.ndarray, probs: Sequence[float], robust: bool = False) -> list:
        return [*_summarise(arr, probs, robust), *_convergence(arr)]

    def fixef(self, probs: Sequence[float] = (0.025, 0.975), robust: bool = False
              ) -> pd.DataFrame:
        """Population-level effects of every predictor, brms's rows (Intercept, x,
        sigma_Intercept, sigma_x, zi_Intercept, ...; cumulative: Intercept[1]..[K-1], the
        cutpoints): Estimate (mean; median if robust), Est.Error (sd; MAD), quantiles,
        Rhat, Bulk_ESS, Tail_ESS."""
        rows, index = [], []
        cut = self.cutpoints()
        if cut is not None:
            for j in range(cut.shape[-1]):
                rows.append(self._row(cut[..., j], probs, robust))
                index.append(f"Intercept[{j + 1}]")
        for p in self.design.predictors:
            b = self._coef[p.dpar]
            for j, name in enumerate(p.X_names):
                rows.append(self._row(b[..., j], probs, robust))
                index.append(coef_label(p.dpar, name))
        return pd.DataFrame(rows, index=index, columns=["Estimate", "Est.Error",
                                                        *_qcols(probs), "Rhat", "Bulk_ESS",
                                                        "Tail_ESS"])

    def varcorr(self, prob: float = 0.95) -> pd.DataFrame:
        """As R's as.data.frame(VarCorr(fit)), one block per term: grp, dpar, var1, var2,
        vcov, sdcor (posterior means) and the central `prob` interval of sdcor."""
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        rows = []
        for k, (t, d) in enumerate(zip(self.design.terms, self.design.term_predictor)):
            dpar = self.design.predictors[d].dpar
            sd = self._flat(self._sd[k])
            for m, c in enumerate(t.coef_names):
                s = sd[:, m]
                rows.append((t.group, dpar, c, None, float((s ** 2).mean()), float(s.mean()),
                             float(np.quantile(s, lo)), float(np.quantile(s, hi))))
            cor = self._cor[k]
            if cor is not None:
                cor = self._flat(cor)
                for j in range(t.p):
                    for i in range(j + 1, t.p):
                        c = cor[:, i, j]
                        rows.append((t.group, dpar, t.coef_names[j], t.coef_names[i],
                                     float((c * sd[:, i] * sd[:, j]).mean()), float(c.mean()),
                                     float(np.quantile(c, lo)), float(np.quantile(c, hi))))
        return pd.DataFrame(rows, columns=["grp", "dpar", "var1", "var2", "vcov", "sdcor",
                                           "lower", "upper"])

    VarCorr = varcorr

    def ranef(self, stat: str | float = "mean") -> dict[str, pd.DataFrame]:
        """Group-level effects per term: levels x coefficients (columns brms-named per dpar:
        Intercept, x, zi_Intercept); keys the grouping factor, with the dpar when the same
        factor has terms in several predictors (``"g"``, ``"g (zi)"``)."""
        out: dict[str, pd.DataFrame] = {}
        for k, (t, d) in enumerate(zip(self.design.terms, self.design.term_predictor)):
            dpar = self.design.predictors[d].dpar
            key = t.group if dpar == "mu" else f"{t.group} ({dpar})"
            while key in out:
                key += "'"
            out[key] = pd.DataFrame(self._stat(self._ranef[k], stat), index=list(t.levels),
                                    columns=[_term_coef(dpar, c) for c in t.coef_names])
        return out

    def _group_draws(self, group: str) -> tuple[list[str], list[str], np.ndarray]:
        """(levels, brms-named coefficients, draws (chain, draw, level, coef)) of every term
        of one grouping factor, across predictors (Intercept, x, zi_Intercept, ...)."""
        d = self.design
        ks = [k for k, t in enumerate(d.terms) if t.group == group]
        if not ks:
            groups = list(dict.fromkeys(t.group for t in d.terms))
            raise BayesmixError(f"no grouping factor {group!r}; the model has: "
                                f"{', '.join(map(repr, groups)) or '(none)'}")
        levels = list(d.terms[ks[0]].levels)
        if any(list(d.terms[k].levels) != levels for k in ks):
            raise BayesmixError(f"the terms of {group!r} have different levels; use "
                                "ranef() (one table per term)")
        coefs, arrs = [], []
        for k in ks:
            dpar = d.predictors[d.term_predictor[k]].dpar
            coefs += [_term_coef(dpar, c) for c in d.terms[k].coef_names]
            arrs.append(self._ranef[k])
        if len(set(coefs)) != len(coefs):
            raise BayesmixError(f"{group!r} has several terms with the same coefficient in "
                                "one predictor; use ranef() (one table per term)")
        return levels, coefs, np.concatenate(arrs, axis=-1)

    def ranef_draws(self, group: str):
        """Draws of one grouping factor's effects, every predictor's terms together:
        xarray DataArray (chain, draw, level, coef), coef named as brms (Intercept, x,
        zi_Intercept)."""
        import xarray as xr
        levels, coefs, r = self._group_draws(group)
        return xr.DataArray(r, dims=("chain", "draw", f"{group}_level", "coef"),
                            coords={"chain": np.arange(r.shape[0]),
                                    "draw": np.arange(r.shape[1]),
                                    f"{group}_level": levels, "coef": coefs},
                            name=f"r_{group}")

    def coef(self, stat: str | float = "mean") -> dict[str, pd.DataFrame]:
        """Per grouping factor: population-level plus group-level effects for every level
        (brms's / lme4's coef()), every predictor's coefficients (Intercept, x,
        sigma_Intercept, zi_Intercept; fixef's rows; cumulative: Intercept[k] = c_k - r, the
        group intercept moving every threshold), summarised over
        draws with `stat` ('mean', 'median', 'sd' or a probability). Draw by draw, so
        'sd' and quantiles are those of the sums."""
        d = self.design
        cut = self.cutpoints()
        fixed = {} if cut is None else {f"Intercept[{j + 1}]": cut[..., j]
                                        for j in range(cut.shape[-1])}
        fixed.update({coef_label(p.dpar, n): self._coef[p.dpar][..., j]
                      for p in d.predictors for j, n in enumerate(p.X_names)})
        out = {}
        for group in dict.fromkeys(t.group for t in d.terms):
            levels, coefs, r = self._group_draws(group)
            # cumulative: P(y <= k) = F(c_k - eta), so a group intercept moves every
            # threshold by -r (brms's coef() does the same)
            ordinal = cut is not None and "Intercept" in coefs
            cols = list(fixed) + [c for c in coefs if c not in fixed
                                  and not (ordinal and c == "Intercept")]
            total = np.zeros(r.shape[:3] + (len(cols),))
            for i, c in enumerate(cols):
                if c in fixed:
                    total[..., i] = fixed[c][..., None]
            for m, c in enumerate(coefs):
                if ordinal and c == "Intercept":
                    for j in range(cut.shape[-1]):
                        total[..., j] -= r[..., m]
                else:
                    total[..., cols.index(c)] += r[..., m]
            out[group] = pd.DataFrame(self._stat(total, stat), index=levels, columns=cols)
        return out

    def ngrps(self) -> dict[str, int]:
        return {t.group: t.n_levels for t in self.design.terms}

    def sigma(self) -> float:
        c = self._constants()
        if "sigma" not in c:
            raise BayesmixError("sigma is not a constant of this model (modelled by a formula "
                                "or not a parameter of the family): see fixef()")
        return float(c["sigma"].mean())

    def prior_summary(self) -> pd.DataFrame:
        return dist_prior_summary(self.design, self.priors)

    def prior_draws(self, seed: int | None = None):
        raise BayesmixError("exact prior draws are not available for distributional models "
                            "yet: sample with prior_only=True")

    def export_meta(self) -> dict:
        """run.json's "fit" entry (export itself is PosteriorFit.export, bayesmix.bundle)."""
        return {"priors": [p.to_dict() for p in self.priors], "program": self.program_kind}

    # -- ArviZ ---------------------------------------------------------------------------
    @cached_property
    def response_name(self) -> str:
        from ..formula import parse_formula
        parsed = parse_formula(self.design.formula.formula, self.design.transforms)
        return (parsed.cbind[0] if parsed.cbind else parsed.response).strip().strip("`")

    @cached_property
    def _idata(self):
        return self._inference_data()

    def to_arviz(self, prior: bool | None = None):
        """arviz.InferenceData: posterior (one variable per coefficient in fixef's names,
        ``sd(1|g)`` / ``sd(zi_1|g)``, ``cor(1,x|g)``, the constant parameters on their
        natural scale (``sigma``, ``nu``, ``phi``, ``shape``, ``zi``, ``hu``), ``cutpoints``,
        group-level effects ``1|g`` / ``zi_1|g`` with dim ``g_level``), log_likelihood,
        posterior_predictive, observed_data (named after the response) and sample_stats."""
        if prior:
            raise BayesmixError("prior draws are not available for distributional models")
        return self._idata

    def _inference_data(self):
        import arviz as az
        from ..bayes.idata import SAMPLE_STATS
        d = self.design
        post: dict[str, np.ndarray] = {}
        dims: dict[str, list[str]] = {}
        coords: dict[str, list] = {}
        for p in d.predictors:
            b = self._coef[p.dpar]
            for j, name in enumerate(p.X_names):
                post[coef_label(p.dpar, name).replace("/", "\u2215")] = b[..., j]
        cut = self.cutpoints()
        if cut is not None:
            post["cutpoints"] = cut
            dims["cutpoints"] = ["threshold"]
            coords["threshold"] = [f"{a}|{b}" for a, b in zip(d.categories, d.categories[1:])]

        def lab(dpar, c):
            c = "1" if c == "(Intercept)" else c.replace("/", "\u2215")
            return c if dpar == "mu" else f"{dpar}_{c}"

        for k, (t, di) in enumerate(zip(d.terms, d.term_predictor)):
            dpar = d.predictors[di].dpar
            for m, c in enumerate(t.coef_names):
                post[f"sd({lab(dpar, c)}|{t.group})"] = self._sd[k][..., m]
            if self._cor[k] is not None:
                for j in range(t.p):
                    for i in range(j + 1, t.p):
                        name = (f"cor({lab(dpar, t.coef_names[j])},"
                                f"{lab('mu', t.coef_names[i])}|{t.group})")
                        post[name] = self._cor[k][..., i, j]
        for name, v in self._constants().items():
            post.setdefault(name, v)
        for k, (t, di) in enumerate(zip(d.terms, d.term_predictor)):
            dpar = d.predictors[di].dpar
            dim = f"{t.group}_level"
            coords[dim] = list(t.levels)
            for m, c in enumerate(t.coef_names):
                name = f"{lab(dpar, c)}|{t.group}"
                post[name], dims[name] = self._ranef[k][..., m], [dim]
        cfit = self.cmdstan_fit
        stats = {}
        for col, name in SAMPLE_STATS.items():
            arr = cfit.method_variables().get(col)
            if arr is not None:
                arr = np.asarray(arr).reshape(-1, self.chains).T
                stats[name] = arr.astype(bool) if name == "diverging" else (
                    arr.astype(np.int64) if name in ("tree_depth", "n_steps") else arr)
        yname = self.response_name
        coords["obs"] = np.arange(d.n)  # an array: ArviZ deep-copies coords per variable
        dims[yname] = ["obs"]
        kwargs = {}
        if self.stan_data.get("save_log_lik", 0):
            kwargs["log_likelihood"] = {yname: self.draws("log_lik")}
        if self.stan_data.get("save_y_rep", 0):
            kwargs["posterior_predictive"] = {yname: self.draws("y_rep")}
        constant = {}
        for t in d.terms:
            if t.group not in constant:
                constant[t.group] = np.asarray(t.levels, dtype=object)[
                    np.asarray(t.index)].astype(str)
        if d.trials is not None:
            constant["trials"] = np.asarray(d.trials, dtype=float)
        if d.offset is not None:
            constant["offset"] = np.asarray(d.offset, dtype=float)
        if constant:
            kwargs["constant_data"] = constant
            dims.update({k: ["obs"] for k in constant})
        idata = az.from_dict(posterior=post, sample_stats=stats,
                             observed_data={yname: np.asarray(d.y)}, coords=coords, dims=dims,
                             **kwargs)
        attrs = {"inference_library": "bayesmix (Stan NUTS, distributional)",
                 "engine": self.run.engine.name, "stan_version": self.run.engine.stan_version,
                 "formula": str(d.formula), "family": str(d.family), "chains": self.chains}
        for grp in idata.groups():
            idata[grp].attrs.update(attrs)
        return idata

    # -- predictions (bayesmix.dist.predict) --------------------------------------------
    def params(self, ndraws: int | None = None):
        """The draws as `bayesmix.dist.predict.DistParams` (S = chains x draws, chain by
        chain; the first `ndraws` of them if given): beta per dpar (S, k_d) in X_names order,
        ranef per term (S, n_levels, p), cutpoints (S, K - 1) or None, sd and cor per term."""
        from .predict import DistParams
        sl = slice(None, ndraws)
        cut = self.cutpoints()
        return DistParams(
            beta={k: self._flat(v)[sl] for k, v in self._coef.items()},
            ranef=tuple(self._flat(r)[sl] for r in self._ranef),
            cutpoints=None if cut is None else self._flat(cut)[sl],
            sd=tuple(self._flat(s)[sl] for s in self._sd),
            cor=tuple(None if c is None else self._flat(c)[sl] for c in self._cor))

    def linpred(self, newdata: pd.DataFrame | None = None, dpar: str = "mu",
                re_form: Any = None, allow_new_levels: bool = False,
                sample_new_levels: Any = None, seed: int | None = None,
                ndraws: int | None = None) -> np.ndarray:
        """Draws (S, n) of one predictor's linear predictor (link scale; mu's with the
        offset). newdata, re_form and new levels as bayesmix.dist.predict."""
        from . import predict
        if dpar not in [p.dpar for p in self.design.predictors]:
            raise BayesmixError(f"no distributional parameter {dpar!r}; this model has: "
                                f"{', '.join(p.dpar for p in self.design.predictors)}")
        return predict.linpred(self.design, self.params(ndraws), newdata, re_form,
                               allow_new_levels, sample_new_levels,
                               np.random.default_rng(seed))[dpar]

    def dpars(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
              allow_new_levels: bool = False, sample_new_levels: Any = None,
              seed: int | None = None, ndraws: int | None = None) -> dict[str, np.ndarray]:
        """Draws (S, n) of every distributional parameter on its natural scale."""
        from . import predict
        return predict.dpars(self.design, self.params(ndraws), newdata, re_form,
                             allow_new_levels, sample_new_levels, np.random.default_rng(seed))

    def epred(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
              allow_new_levels: bool = False, sample_new_levels: Any = None,
              seed: int | None = None, ndraws: int | None = None, trials: Any = None
              ) -> np.ndarray:
        """Draws (S, n) of the expected response (beta_binomial: expected successes;
        cumulative: the expected category number; `epred_categories` gives P(y = k))."""
        from . import predict
        return predict.epred(self.design, self.params(ndraws), newdata, re_form,
                             allow_new_levels, sample_new_levels, np.random.default_rng(seed),
                             trials)

    def epred_categories(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                         allow_new_levels: bool = False, sample_new_levels: Any = None,
                         seed: int | None = None, ndraws: int | None = None) -> np.ndarray:
        """Cumulative models: draws (S, n, K) of the category probabilities."""
        from . import predict
        return predict.epred_categories(self.design, self.params(ndraws), newdata, re_form,
                                        allow_new_levels, sample_new_levels,
                                        np.random.default_rng(seed))

    def log_lik(self, ndraws: int | None = None) -> np.ndarray:
        """(S, n) pointwise log-likelihood at the data from the draws (numpy, every constant
        included; equals the program's own log_lik, which `to_arviz` and `loo` use)."""
        from . import predict
        return predict.log_lik(self.design, self.params(ndraws))

    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False, sample_new_levels: Any = None,
                seed: int | None = None, ndraws: int | None = None, trials: Any = None
                ) -> np.ndarray:
        """Posterior predictive draws (S, n): one response simulated at every draw, at the
        data or at `newdata` (numpy, seeded; the program's own draws are to_arviz()'s
        posterior_predictive)."""
        from . import predict
        return predict.simulate(self.design, self.params(ndraws), np.random.default_rng(seed),
                                newdata, re_form, allow_new_levels, sample_new_levels, trials)

    def simulate(self, seed: int | None = None, ndraws: int | None = None) -> np.ndarray:
        """(S, n) responses simulated at the data's rows, one per draw (= predict())."""
        return self.predict(seed=seed, ndraws=ndraws)

    def predictive_interval(self, prob: float = 0.9, newdata=None, **kwargs) -> pd.DataFrame:
        """Central `prob` intervals of the posterior predictive draws, one row per row."""
        y = self.predict(newdata, **kwargs)
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        return pd.DataFrame({f"{100 * lo:g}%": np.quantile(y, lo, axis=0),
                             f"{100 * hi:g}%": np.quantile(y, hi, axis=0)})

    # -- summary ----------------------------------------------------------------------------
    def summary(self, prob: float = 0.95) -> "DistPosteriorSummary":
        return DistPosteriorSummary.of(self, prob)

    def __repr__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self.summary()))}</pre>"


@dataclass(frozen=True)
class DistPosteriorSummary(PosteriorSummary):
    """brms-like summary of a distributional fit: PosteriorSummary's layout and printing, its
    header with every predictor's link and formula."""

    @classmethod
    def of(cls, fit: DistPosteriorFit, prob: float = 0.95) -> "DistPosteriorSummary":
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        pct = f"{100 * prob:g}"
        cols = ["Estimate", "Est.Error", f"l-{pct}% CI", f"u-{pct}% CI", "Rhat", "Bulk_ESS",
                "Tail_ESS"]
        d = fit.design
        random: dict[str, pd.DataFrame] = {}
        for k, (t, di) in enumerate(zip(d.terms, d.term_predictor)):
            dpar = d.predictors[di].dpar
            key = f"~{t.group} (Number of levels: {t.n_levels})"
            rows, index = [], []
            for m, c in enumerate(t.coef_names):
                rows.append(fit._row(fit._sd[k][..., m], (lo, hi)))
                index.append(f"sd({_term_coef(dpar, c)})")
            if fit._cor[k] is not None:
                for j in range(t.p):
                    for i in range(j + 1, t.p):
                        rows.append(fit._row(fit._cor[k][..., i, j], (lo, hi)))
                        index.append(f"cor({_term_coef(dpar, t.coef_names[j])},"
                                     f"{_term_coef(dpar, t.coef_names[i])})")
            df = pd.DataFrame(rows, index=index, columns=cols)
            random[key] = pd.concat([random[key], df]) if key in random else df
        fixed = fit.fixef(probs=(lo, hi))
        fixed.columns = cols
        consts = fit._constants()
        # a constant parameter is shown on its natural scale below, not as a link-scale row
        fixed = fixed.drop(index=[coef_label(p, "(Intercept)") for p in consts])
        family_pars = pd.DataFrame([fit._row(v, (lo, hi)) for v in consts.values()],
                                   index=list(consts), columns=cols)
        links = "; ".join(f"{p.dpar} = {p.link}" for p in d.predictors)
        formulas = [f"Formula: {d.formula.formula.strip()}"]
        formulas += [f"         {dp} ~ {f.split('~', 1)[-1].strip()}"
                     for dp, f in d.formula.dpars]
        draws, footer, notes = fit.summary_lines()
        header = (f" Family: {d.family.name}", f"  Links: {links}", *formulas,
                  f"   Data: {d.n} observations"
                  + (f" ({d.dropped_na} rows with missing values dropped)"
                     if d.dropped_na else ""),
                  *draws)
        return cls(header, random, fixed, family_pars, notes, footer)



def fit_dist_nuts(design: DistDesign, priors: Iterable[Prior] = (), chains: int = 4,
                  iter_warmup: int = 1000, iter_sampling: int = 1000, seed: int | None = None,
                  adapt_delta: float = 0.8, max_treedepth: int = 10,
                  show_progress: bool | None = None, engine: str = "auto",
                  metric: str = "diag_e", thin: int = 1,
                  inits: dict | None = None, save_log_lik: bool = True,
                  save_y_rep: bool = True, output_dir: str | None = None,
                  prior_only: bool = False, diagnostics: bool = True,
                  sig_figs: int | None = None) -> DistPosteriorFit:
    """Sample the joint posterior of a distributional design (`build_dist_design`) with
    NUTS on stan/dist_nuts.stan (compiled once for every model). Priors are checked (an
    unknown dpar, class, coef or group raises PriorError) before anything compiles.
    inits: starting values in the program's names (beta, sd_all, z_all, cpc_raw,
    cutpoints); by default `dist_nuts_inits`. sig_figs: digits of Stan's CSV output (its
    default 6; 18 keeps every bit of the draws). After sampling `diagnostics()` runs and each
    problem is issued as a SamplingWarning (diagnostics=False skips it)."""
    from ..bayes.fit import sample_program
    if not isinstance(design, DistDesign):
        raise BayesmixError(f"fit_dist_nuts needs a DistDesign (build_dist_design), not "
                            f"{type(design).__name__}")
    check_sampler_args(chains, iter_warmup, iter_sampling, thin, adapt_delta, metric)
    priors = tuple(priors)
    data = dist_nuts_data(design, priors, prior_only=prior_only, save_log_lik=save_log_lik,
                          save_y_rep=save_y_rep)  # validates the priors first
    if prior_only and 0 in data["prior_dist"]:
        flat = [f"{s.cls} {s.coef or ''} ({s.dpar})".replace("  ", " ")
                for s in resolve_dist_priors(design, priors)
                if s.row is not None and data["prior_dist"][s.row] == 0]
        raise PriorError("sampling from the priors needs proper priors on every parameter "
                         f"(as brms); flat: {', '.join(flat)}. Set them, e.g. "
                         "prior('normal(0, 1)', cls='b') and prior(..., cls='b', dpar=...)")
    program = dist_nuts_program(design)
    start = dist_nuts_inits(design) if inits is None else inits
    return sample_program(DistPosteriorFit, design, priors, program, data, inits=start,
                          engine=engine, diagnostics=diagnostics, chains=chains,
                          iter_warmup=iter_warmup, iter_sampling=iter_sampling, seed=seed,
                          adapt_delta=adapt_delta, max_treedepth=max_treedepth,
                          metric=metric, thin=thin, show_progress=show_progress,
                          output_dir=output_dir, sig_figs=sig_figs)


def _restore_bundle(design: DistDesign, meta: dict, run, stan_data: dict,
                    inits: dict | None = None, **_) -> DistPosteriorFit:
    """bayesmix.load / rerun of a "dist_nuts" bundle: the fit over its CSV draws (no
    sampling). Its priors are data (`prior` parses them) and must fit the design."""
    from ..priors import prior
    priors = tuple(prior(**p) for p in meta.get("priors", []))
    resolve_dist_priors(design, priors)  # PriorError naming a prior the model cannot take
    return DistPosteriorFit(design, priors, run, dist_nuts_program(design), stan_data,
                            inits=inits)


from ..registry import register_restorer  # noqa: E402  (below the result class it restores)

register_restorer("dist_nuts", _restore_bundle)


__all__ = ["DIST_NUTS_PROGRAM", "DistPosteriorFit", "DistPosteriorSummary", "DistPriorSlot",
           "coef_label", "dist_nuts_code", "dist_nuts_data", "dist_nuts_inits",
           "dist_prior_data", "dist_prior_summary", "fit_dist_nuts", "resolve_dist_priors"]
