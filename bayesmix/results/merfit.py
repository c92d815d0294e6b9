"""Accessors shared by the lmer and glmer results (lme4's merMod methods).

Both results hold `design` and `estimates` with the same per-term fields
(beta, vcov, theta, factors, varcorr_*, ranef, condsd, logLik, n_params)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import design_for_newdata
from ..design.reform import re_form_groups
from ..lmm.theta import SINGULAR_TOL, singular_factors, tril_positions
from ..plots import PlotMixin
from ..registry import CONFINT, EXPORT, operation
from .format import signif_str


class MerFitMixin(PlotMixin):
    has_scale = True  # whether varcorr() lists a residual row

    def export(self, path: str) -> str:
        """Write a reproducible Stan bundle (see bayesmix.export)."""
        return operation(EXPORT)(self, path)

    def _linear_predictor(self, newdata, re_form, allow_new_levels: bool) -> np.ndarray:
        """X beta + offset + the random effects of the groups re_form keeps, on the model's
        rows or new data (new levels get zero random effects), as lme4's predict."""
        groups = re_form_groups(re_form, self.design)
        data = self.design.data if newdata is None else newdata
        nd = design_for_newdata(self.design, data, allow_new_levels=allow_new_levels,
                                random=bool(groups))
        eta = nd.X @ self.estimates.beta
        if nd.offset is not None:
            eta = eta + nd.offset
        for k, (t, nt) in enumerate(zip(self.design.terms, nd.terms)):
            if t.group not in groups:
                continue
            b = self.estimates.ranef[k]
            known = nt.index >= 0
            eta[known] += np.einsum("ij,ij->i", nt.Z[known], b[nt.index[known]])
        return eta

    @property
    def theta(self) -> pd.Series:
        names = []
        for t in self.design.terms:
            for i, j in zip(*tril_positions(t.p)):
                a, b = t.coef_names[i], t.coef_names[j]
                names.append(f"{t.group}.{a}" if i == j else f"{t.group}.{a}.{b}")
        return pd.Series(self.estimates.theta, index=names)

    def fixef(self) -> pd.Series:
        return pd.Series(self.estimates.beta, index=list(self.design.X_names))

    def vcov(self) -> pd.DataFrame:
        names = list(self.design.X_names)
        return pd.DataFrame(self.estimates.vcov, index=names, columns=names)

    def nobs(self) -> int:
        return self.design.n

    def ngrps(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group, t.n_levels)
        return out

    def _group_labels(self) -> list[str]:
        """lme4's VarCorr names: repeated groups (from `||`) get .1, .2 suffixes."""
        seen: dict[str, int] = {}
        labels = []
        for t in self.design.terms:
            k = seen.get(t.group, 0)
            labels.append(t.group if k == 0 else f"{t.group}.{k}")
            seen[t.group] = k + 1
        return labels

    def varcorr(self) -> pd.DataFrame:
        """Like R's as.data.frame(VarCorr(fit)): grp, var1, var2, vcov, sdcor."""
        rows = []
        est = self.estimates
        for label, t, cov, sd, cor in zip(self._group_labels(), self.design.terms,
                                           est.varcorr_cov, est.varcorr_sd, est.varcorr_cor):
            for i, name in enumerate(t.coef_names):
                rows.append((label, name, None, cov[i, i], sd[i]))
            for j in range(t.p):
                for i in range(j + 1, t.p):
                    rows.append((label, t.coef_names[j], t.coef_names[i], cov[i, j], cor[i, j]))
        if self.has_scale:
            rows.append(("Residual", None, None, self.sigma() ** 2, self.sigma()))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def ranef(self, condvar: bool = False) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor (levels x coefficients); with
        condvar=True, a dict of (modes, conditional SDs) DataFrame pairs."""
        modes: dict[str, list[pd.DataFrame]] = {}
        sds: dict[str, list[pd.DataFrame]] = {}
        for k, t in enumerate(self.design.terms):
            modes.setdefault(t.group, []).append(pd.DataFrame(
                self.estimates.ranef[k], index=list(t.levels), columns=list(t.coef_names)))
            if condvar:  # lmer fits compute them on first use
                sds.setdefault(t.group, []).append(pd.DataFrame(
                    self.estimates.condsd[k], index=list(t.levels),
                    columns=list(t.coef_names)))
        out = {g: pd.concat(v, axis=1) for g, v in modes.items()}
        if condvar:
            return {g: (out[g], pd.concat(sds[g], axis=1)) for g in out}
        return out

    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed plus random effects per level (lme4's coef())."""
        fe = self.fixef()
        out = {}
        for group, re in self.ranef().items():
            table = pd.DataFrame(np.tile(fe.values, (len(re), 1)), index=re.index,
                                 columns=fe.index)
            for col in re.columns:
                if col in table.columns:
                    table[col] += re[col]
                else:
                    table[col] = re[col]
            out[group] = table
        return out

    def loglik(self) -> float:
        return float(self.estimates.logLik)

    def df(self) -> int:
        """Parameters counted by AIC/BIC (lme4's logLik df)."""
        return int(self.estimates.n_params)

    def aic(self) -> float:
        return -2 * self.loglik() + 2 * self.df()

    def bic(self) -> float:
        return -2 * self.loglik() + np.log(self.nobs()) * self.df()

    def is_singular(self, tol: float = SINGULAR_TOL) -> bool:
        """lme4's isSingular: a diagonal of some relative factor T_k below tol."""
        return singular_factors(self.estimates.factors, tol)

    def confint(self, level: float = 0.95, method: str = "profile", parm=None,
                **boot_args) -> pd.DataFrame:
        """Confidence intervals like lme4's confint.merMod, rows named as its
        ``oldNames = FALSE`` (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ...,
        ``sigma``, then the fixed effects).

        method="profile" (lme4's default): likelihood profiles of the ML deviance (a REML fit is
        refitted by ML first) or of the Laplace deviance (binomial and poisson glmer fits, as
        lme4); "Wald": normal intervals for the fixed effects, NaN for the variance parameters;
        "boot": parametric bootstrap percentile intervals through ``bayesmix.bootstrap`` (extra
        keyword arguments such as nsim, seed, executor go there). ``parm``: names or positions
        of rows, or lme4's "theta_" (variance parameters) / "beta_" (fixed effects)."""
        return operation(CONFINT)(self, level=level, method=method,
                                                     parm=parm, **boot_args)


def random_effects_table(f) -> list[str]:
    """lme4's 'Random effects:' table (Groups, Name, Variance, Std.Dev., Corr)."""
    rows = []
    for label, t, cov, sd, cor in zip(f._group_labels(), f.design.terms,
                                       f.estimates.varcorr_cov, f.estimates.varcorr_sd,
                                       f.estimates.varcorr_cor):
        for i, name in enumerate(t.coef_names):
            corr = " ".join(f"{cor[i, j]:5.2f}" for j in range(i))
            rows.append((label if i == 0 else "", name, signif_str(cov[i, i]),
                         signif_str(sd[i]), corr))
    if f.has_scale:
        s = f.sigma()
        rows.append(("Residual", "", signif_str(s ** 2), signif_str(s), ""))
    has_corr = any(r[4] for r in rows)
    header = ("Groups", "Name", "Variance", "Std.Dev.") + (("Corr",) if has_corr else ())
    widths = [max(len(str(r[i])) for r in [header[:4] + ("",)] + rows) for i in range(4)]
    out = [" " + " ".join(h.ljust(w) if i < 2 else h.rjust(w)
                          for i, (h, w) in enumerate(zip(header, widths + [4])))]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]),
                 r[3].rjust(widths[3])]
        if has_corr:
            cells.append(r[4])
        out.append(" " + " ".join(cells).rstrip())
    return out


def abbreviate(name: str, minlength: int = 6) -> str:
    """R's abbreviate() (as summary.merMod uses it for the correlation table): drop
    lower-case vowels at word ends, then other lower-case vowels, then lower-case letters at
    word ends, then other lower-case letters, right to left, never a word's first character."""
    b = list(name.strip())
    if len(b) <= minlength:
        return "".join(b)

    def nchar():
        return len(b) - sum(c.isspace() for c in b)

    def first(i):
        return b[i - 1].isspace()

    def last(i):
        return not b[i - 1].isspace() and (i + 1 >= len(b) or b[i + 1].isspace())

    passes = [lambda i: b[i] in "aeiou" and last(i),
              lambda i: b[i] in "aeiou" and not first(i),
              lambda i: b[i].islower() and last(i),
              lambda i: b[i].islower() and not first(i),
              lambda i: not first(i) and not b[i].isspace()]
    for cond in passes:
        i = len(b) - 1
        while i > 0:
            if i < len(b) and cond(i):
                del b[i]
            if nchar() <= minlength:
                return "".join(c for c in b if not c.isspace())
            i -= 1
    return "".join(c for c in b if not c.isspace())


def summary_body(f, coef_table=None) -> list[str]:
    """The part of lme4's summary shared by lmer and glmer fits: random effects,
    fixed effects (``coef_table``, default ``f.coef_table()``), their correlations and the
    fit's warnings."""
    from .glm import coefmat_text
    est = f.estimates
    table = f.coef_table() if coef_table is None else coef_table
    lines = ["Random effects:", *random_effects_table(f),
             f"Number of obs: {f.nobs()}, groups:  "
             + "; ".join(f"{g}, {n}" for g, n in f.ngrps().items()),
             "", "Fixed effects:", coefmat_text(table, digits=4)]
    if f.design.p > 1:
        cor = est.vcov / np.outer(est.se, est.se)
        abbrev = [abbreviate(n) for n in f.design.X_names]
        lines += ["", "Correlation of Fixed Effects:",
                  " " * 8 + " ".join(f"{a:>6}" for a in abbrev[:-1])]
        lines += [f"{abbrev[i]:<8}" + " ".join(f"{cor[i, j]:6.3f}" for j in range(i))
                  for i in range(1, f.design.p)]
    if f.is_singular():
        lines += ["", "boundary (singular) fit: see is_singular()"]
    if not f.converged:
        lines += ["", f"optimizer (Stan L-BFGS) convergence code: {f.run.return_code}"]
    return lines
