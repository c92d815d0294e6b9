"""Results of lm/glm fits (no random effects): R's accessors, summary.lm /
summary.glm printouts and arm's display(); also R's number formatting
(format(), format.pval, printCoefmat, print.anova) used by these printouts
and by the anova tables (bayesmix.anovatable, results/anova.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import solve_triangular

from ..registry import EXPORT, operation
from ..design import Design, design_for_newdata
from ..plots import PlotMixin
from ..errors import BayesmixError
from ..families import get_family
from .format import Display, display_text, html_pre

SIGNIF_LEGEND = "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"
EPS = float(np.finfo(float).eps)

# ================================================================ R formatting
def _sci_parts(x: float, digits: int) -> tuple[int, int]:
    """(kpower, nsig) of x rounded to `digits` significant digits."""
    if x == 0:
        return 0, 1
    mant, exp = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mant.replace(".", "").rstrip("0")
    return int(exp), max(1, len(sig))


def format_real(values: Sequence[float], digits: int = 7, nsmall: int = 0) -> list[str]:
    """R's format(x, digits=) for a numeric vector: one common layout (fixed
    or scientific, as R's formatReal chooses), padded to a common width.
    NA/NaN come back as "NA"/"NaN"."""
    vals = [float(v) for v in values]
    fin = [v for v in vals if math.isfinite(v)]
    out: list[str]
    if fin:
        neg_any = any(v < 0 for v in fin)
        mxsl = rgt = mxns = 0
        mxe, mne = -10 ** 9, 10 ** 9
        for v in fin:
            kp, nsig = _sci_parts(v, digits)
            # a value that rounds up to the next power (9.9996 -> 10.00) shifts kp
            sleft = (v < 0) + (kp + 1 if kp >= 0 else 1)
            mxsl = max(mxsl, sleft)
            rgt = max(rgt, nsig - kp - 1)
            mxns = max(mxns, nsig)
            mxe, mne = max(mxe, kp), min(mne, kp)
        rgt = max(rgt, 0, nsmall)
        w_fixed = mxsl + rgt + (rgt > 0)
        e_width = 2 if (mxe >= 100 or mne <= -99) else 1
        d_sci = mxns - 1
        w_sci = neg_any + (d_sci > 0) + d_sci + 4 + e_width
        if w_fixed <= w_sci:
            out = [f"{v:.{rgt}f}" if math.isfinite(v) else _na(v) for v in vals]
        else:
            out = [f"{v:.{d_sci}e}" if math.isfinite(v) else _na(v) for v in vals]
    else:
        out = [_na(v) for v in vals]
    width = max((len(s) for s in out), default=0)
    return [s.rjust(width) for s in out]


def _na(v: float) -> str:
    if math.isnan(v):
        return "NA"
    return "Inf" if v > 0 else "-Inf"


def format1(x: float, digits: int = 7) -> str:
    return format_real([x], digits)[0] if not math.isnan(x) else "NaN"


def format_c(x: float, digits: int = 4) -> str:
    """R's formatC(x, digits=) (C's %g)."""
    return f"{x:.{digits}g}" if math.isfinite(x) else ("NaN" if math.isnan(x) else _na(x))


def signif(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def zapsmall(x: np.ndarray, digits: int) -> np.ndarray:
    x = np.asarray(x, float)
    fin = x[np.isfinite(x)]
    mx = np.max(np.abs(fin)) if fin.size else 0.0
    # R 4.2's zapsmall: round(x, digits - log10(mx)), round() rounding the digits
    d = max(0.0, digits - math.log10(mx)) if mx > 0 else digits
    return np.round(x, int(math.floor(d + 0.5)))


def format_pval(pv: Sequence[float], digits: int = 3, eps: float = EPS) -> list[str]:
    """R's format.pval."""
    pv = [float(p) for p in pv]
    out = [""] * len(pv)
    idx = [i for i, p in enumerate(pv) if not math.isnan(p)]
    is0 = [i for i in idx if pv[i] < eps]
    rest = [i for i in idx if pv[i] >= eps]
    if rest:
        expo = {i: math.floor(math.log10(pv[i])) if pv[i] > 0 else -50 for i in rest}
        fixp = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
        sci = [i for i in rest if i not in fixp]
        for group in (fixp, sci):
            if group:
                for i, s in zip(group, format_real([pv[i] for i in group], digits)):
                    out[i] = s
    if is0:
        d = max(1, digits - 2)
        if rest:
            nc = max(len(out[i]) for i in rest)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if (d == 1 and nc <= 6) else " "
        else:
            sep = "" if d == 1 else " "
        for i in is0:
            out[i] = "<" + sep + format_real([eps], d)[0].strip()
    for i, p in enumerate(pv):
        if math.isnan(p):
            out[i] = "NA"
    return [s.strip() for s in out]


def stars(p: float) -> str:
    if not math.isfinite(p):
        return ""
    for cut, sym in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return sym
    return " "


def print_matrix(cells: list[list[str]], row_names: Sequence[str], col_names: Sequence[str],
                 gap: int = 1) -> str:
    """R's print.default of a character matrix (quote=FALSE, right=TRUE)."""
    rw = max([len(r) for r in row_names] + [0])
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(col_names)]
    sp = " " * gap
    lines = [" " * rw + "".join(sp + c.rjust(w) for c, w in zip(col_names, widths))]
    for name, row in zip(row_names, cells):
        lines.append(name.ljust(rw) + "".join(sp + v.rjust(w) for v, w in zip(row, widths)))
    return "\n".join(lines)


def print_named(values: Sequence[float], names: Sequence[str], digits: int, gap: int = 1) -> str:
    """R's print of a named numeric vector (common width, trailing space)."""
    strs = [s.strip() for s in format_real(values, digits)]
    w = max(len(s) for s in list(strs) + list(names))
    sp = " " * gap
    return (sp.join(n.rjust(w) for n in names) + sp + "\n"
            + sp.join(s.rjust(w) for s in strs) + sp)


def coefmat_text(table: pd.DataFrame, digits: int = 4, cs_ind: Sequence[int] | None = None,
                 tst_ind: Sequence[int] | None = None, zap_ind: Sequence[int] = (),
                 has_pvalue: bool | None = None, na_print: str = "NA",
                 signif_stars: bool = True) -> str:
    """R's printCoefmat: columns cs_ind (estimates and standard errors) share
    a layout, tst_ind are test statistics, the last column p-values."""
    xm = table.to_numpy(dtype=float).copy()
    nrow, nc = xm.shape
    cols = list(table.columns)
    if has_pvalue is None:
        has_pvalue = nc >= 4 and str(cols[-1])[:3] in ("Pr(", "p-v")
    k = nc - int(has_pvalue) - (1 if tst_ind is None else len(tst_ind))
    if cs_ind is None:
        cs_ind = list(range(k))
    if tst_ind is None:
        tst_ind = [k]
    dig_tst = max(1, min(5, digits - 1))
    cf = [["" for _ in range(nc)] for _ in range(nrow)]
    ina = np.isnan(xm)
    ok = ~ina
    for i in zap_ind:
        xm[:, i] = zapsmall(xm[:, i], digits)
    if len(cs_ind):
        cs = xm[:, cs_ind]
        acs = np.abs(cs[np.isfinite(cs)])
        if acs.size:
            nz = acs[acs != 0]
            digmin = 1 + (np.floor(np.log10([nz.min(), nz.max()])) if nz.size else np.array([0.0]))
            dec = int(max(1, np.max(digits - digmin)))
            flat = format_real(np.round(cs, dec).ravel(), digits)
            for (r, c), s in zip(np.ndindex(cs.shape), flat):
                cf[r][cs_ind[c]] = s
    for j in tst_ind:
        for r, s in enumerate(format_real(np.round(xm[:, j], dig_tst), digits)):
            cf[r][j] = s
    other = [j for j in range(nc) if j not in cs_ind and j not in tst_ind
             and not (has_pvalue and j == nc - 1)]
    for j in other:
        for r, s in enumerate(format_real(xm[:, j], digits)):
            cf[r][j] = s
    # entries that are non-zero but printed as zero get digits - 1 significant digits
    checked = [j for j in range(nc) if j not in tst_ind and not (has_pvalue and j == nc - 1)]
    fix = [(r, j) for j in checked for r in range(nrow)
           if ok[r, j] and xm[r, j] != 0 and _as_float(cf[r][j]) == 0]
    if fix:
        for (r, j), s in zip(fix, format_real([xm[r, j] for r, j in fix], max(1, digits - 1))):
            cf[r][j] = s
    for r in range(nrow):
        for j in range(nc):
            if ina[r, j]:
                cf[r][j] = na_print
    legend = False
    if has_pvalue:
        okp = [r for r in range(nrow) if ok[r, nc - 1]]
        if okp:
            for r, s in zip(okp, format_pval([xm[r, nc - 1] for r in okp], dig_tst)):
                cf[r][nc - 1] = s
            if signif_stars and any(xm[r, nc - 1] < 0.1 for r in okp):
                sym = [stars(xm[r, nc - 1]) for r in range(nrow)]
                w = max(len(s) for s in sym)
                for r in range(nrow):
                    cf[r].append(sym[r].ljust(w))
                cols = cols + [""]
                legend = True
    text = print_matrix(cf, [str(i) for i in table.index], [str(c) for c in cols])
    if legend:
        text += "\n---\n" + SIGNIF_LEGEND
    return text


def _as_float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return float("nan")


def anova_text(table: pd.DataFrame, heading: Sequence[str] = (), digits: int = 5,
               signif_stars: bool = True) -> str:
    """R's print.anova."""
    cols = [str(c) for c in table.columns]
    nc = len(cols)
    has_p = cols[-1].startswith("Pr(") or cols[-1].startswith("P(")
    zap = list(range(nc - 1 if has_p else nc))
    tst = [j for j, c in enumerate(cols) if c[1:7] == " value"]
    tst += [j for j, c in enumerate(cols) if c in ("F", "Cp", "Chisq")]
    zap = [j for j in zap if j not in tst]
    zap = [j for j in zap if not cols[j].endswith("Df")]
    body = coefmat_text(table, digits=digits, cs_ind=[], tst_ind=tst, zap_ind=zap,
                        has_pvalue=has_p, na_print="", signif_stars=signif_stars)
    return "\n".join([*heading, body])


# ================================================================ the fit


@dataclass(frozen=True, eq=False)
class GlmFit(PlotMixin):
    """An lm or glm fit (no random effects), with R's accessors and printouts.

    Coefficients of aliased (rank-deficient) columns are not estimated; they
    are listed in `aliased` and appear as NaN in coef() and as NA in summary()."""
    design: Design
    family: Any  # bayesmix.glmfit.GlmFamily
    fitter: str  # "lm" or "glm"
    data: Any  # bayesmix.glmfit.GlmData: y on R's glm scale, prior weights, offset
    irls: Any  # bayesmix.irls.IrlsResult
    null_deviance_: float
    df_null: int
    df_residual_: int
    n_ok: int  # observations with non-zero prior weight
    aic_: float  # R's glm aic (family aic + 2 rank)
    intercept: bool
    data_name: str | None = None

    @property
    def kind(self) -> str:
        return self.fitter

    def export(self, path: str) -> str:
        """Write a bundle (formula, rows, levels, weights; see bayesmix.export).
        There is no Stan program: loading it refits in closed form."""
        return operation(EXPORT)(self, path)

    def export_meta(self) -> dict:
        return {"fitter": self.fitter}

    @property
    def aliased(self) -> tuple[str, ...]:
        return tuple(self.design.dropped_columns)

    @property
    def converged(self) -> bool:
        return bool(self.irls.converged)

    @property
    def iterations(self) -> int:
        return int(self.irls.iterations)

    @property
    def rank(self) -> int:
        return self.design.p

    @property
    def is_lm(self) -> bool:
        """Gaussian with identity link (the lm statistics are defined)."""
        return self.family.name == "gaussian" and self.family.link.name == "identity"

    # -- coefficients ------------------------------------------------------
    def fixef(self) -> pd.Series:
        """The estimated coefficients (aliased ones left out, like lme4's fixef)."""
        return pd.Series(self.irls.beta, index=list(self.design.X_names))

    def coef(self) -> pd.Series:
        """R's coef(): every model-matrix column, NaN for aliased ones."""
        est = dict(zip(self.design.X_names, self.irls.beta))
        names = list(self.design.fixed_spec.column_names)
        return pd.Series([est.get(n, np.nan) for n in names], index=names, dtype=float)

    def dispersion(self) -> float:
        """1 for binomial and poisson; otherwise Pearson chi-square / df.residual
        (for gaussian the residual variance, sigma()**2)."""
        if self.family.fixed_dispersion:
            return 1.0
        df = self.df_residual()
        if df <= 0:
            return float("nan")
        w, r = self.irls.working_weights, self.irls.working_residuals
        good = w > 0
        return float(np.sum(w[good] * r[good] ** 2) / df)

    def vcov(self) -> pd.DataFrame:
        Rinv = solve_triangular(self.irls.R, np.eye(self.rank), lower=False)
        cov = self.dispersion() * (Rinv @ Rinv.T)
        names = list(self.design.X_names)
        return pd.DataFrame(cov, index=names, columns=names)

    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov().to_numpy())), index=list(self.design.X_names))

    @property
    def uses_t(self) -> bool:
        """t tests (estimated dispersion) rather than z tests."""
        return not self.family.fixed_dispersion

    def coef_table(self) -> pd.DataFrame:
        """coef(summary(fit)): Estimate, Std. Error, t or z value, Pr(>|t|) or Pr(>|z|)."""
        est = self.irls.beta
        se = self.se().to_numpy()
        stat = est / se
        if self.uses_t:
            p = 2 * stats.t.sf(np.abs(stat), self.df_residual())
            names = ["t value", "Pr(>|t|)"]
        else:
            p = 2 * stats.norm.sf(np.abs(stat))
            names = ["z value", "Pr(>|z|)"]
        return pd.DataFrame({"Estimate": est, "Std. Error": se, names[0]: stat, names[1]: p},
                            index=list(self.design.X_names))

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """t-based intervals for lm (R's confint.lm); Wald z intervals for glm
        (R's confint.default)."""
        a = (1 - level) / 2
        if self.fitter == "lm":
            q = stats.t.ppf(1 - a, self.df_residual())
        else:
            q = stats.norm.ppf(1 - a)
        est, se = self.irls.beta, self.se().to_numpy()
        lo, hi = f"{format1(100 * a, 3).strip()} %", f"{format1(100 * (1 - a), 3).strip()} %"
        return pd.DataFrame({lo: est - q * se, hi: est + q * se}, index=list(self.design.X_names))

    # -- fit statistics ----------------------------------------------------
    def nobs(self) -> int:
        """Observations with non-zero prior weight (R's nobs)."""
        return self.n_ok

    def df_residual(self) -> int:
        return int(self.df_residual_)

    def df(self) -> int:
        """Number of estimated parameters in logLik (sigma counts for gaussian, Gamma)."""
        return self.rank + int(self.family.extra_param)

    def deviance(self) -> float:
        """Residual deviance (the residual sum of squares for gaussian)."""
        return float(self.irls.deviance)

    def null_deviance(self) -> float:
        return float(self.null_deviance_)

    def sigma(self) -> float:
        """Residual standard deviation: sqrt(deviance / df.residual) as R's sigma()."""
        df = self.df_residual()
        return float(np.sqrt(self.deviance() / df)) if df > 0 else float("nan")

    def loglik(self) -> float:
        if self.fitter == "lm":
            w = self.data.prior_weights
            keep = w != 0
            res = (self.data.y - self.irls.mu)[keep]
            w = w[keep]
            N = len(res)
            return float(0.5 * (np.sum(np.log(w))
                                - N * (np.log(2 * np.pi) + 1 - np.log(N)
                                       + np.log(np.sum(w * res ** 2)))))
        return float(self.df() - self.aic_ / 2)

    def aic(self) -> float:
        return -2 * self.loglik() + 2 * self.df()

    def bic(self) -> float:
        return -2 * self.loglik() + np.log(self.nobs()) * self.df()

    def _lm_stats(self) -> dict:
        if not self.is_lm:
            raise BayesmixError("R-squared and the F statistic are defined for gaussian "
                                "identity-link (lm) fits only")
        w = self.data.prior_weights
        keep = w != 0
        f = (self.irls.mu - self.data.offset)[keep]
        r = (self.data.y - self.irls.mu)[keep]
        w = w[keep]
        if self.intercept:
            m = np.sum(w * f / np.sum(w))
            mss = float(np.sum(w * (f - m) ** 2))
        else:
            mss = float(np.sum(w * f ** 2))
        rss = np.float64(np.sum(w * r ** 2))
        rdf = np.float64(self.df_residual())
        p, n = self.rank, len(r)
        df_int = int(self.intercept)
        if p == df_int:
            return dict(r2=0.0, adj=0.0, f=None)
        with np.errstate(divide="ignore", invalid="ignore"):  # no residual df: NaN as R
            r2 = mss / (mss + rss)
            adj = 1 - (1 - r2) * ((n - df_int) / rdf)
            fval = (mss / (p - df_int)) / (rss / rdf)
        return dict(r2=float(r2), adj=float(adj), f=(float(fval), p - df_int, int(rdf)))

    def r_squared(self) -> float:
        return float(self._lm_stats()["r2"])

    def adj_r_squared(self) -> float:
        return float(self._lm_stats()["adj"])

    def fstatistic(self) -> dict | None:
        """{'value', 'numdf', 'dendf', 'p_value'} as summary.lm (None for an
        intercept-only model)."""
        f = self._lm_stats()["f"]
        if f is None:
            return None
        value, numdf, dendf = f
        return {"value": float(value), "numdf": int(numdf), "dendf": int(dendf),
                "p_value": float(stats.f.sf(value, numdf, dendf))}

    # -- fitted values, residuals, predictions -----------------------------
    def fitted(self) -> np.ndarray:
        """Fitted means on the response scale (probabilities for binomial)."""
        return self.irls.mu.copy()

    def linear_predictor(self) -> np.ndarray:
        return self.irls.eta.copy()

    def residuals(self, type: str | None = None) -> np.ndarray:
        """type: "response", "deviance", "pearson" or "working"; default
        "response" for lm and "deviance" for glm (as R)."""
        if type is None:
            type = "response" if self.fitter == "lm" else "deviance"
        y, mu, w = self.data.y, self.irls.mu, self.data.prior_weights
        if type == "response":
            return y - mu
        if type == "working":
            return self.irls.working_residuals.copy()
        if type == "pearson":
            return (y - mu) * np.sqrt(w) / np.sqrt(self.family.variance(mu))
        if type == "deviance":
            d = self.family.dev_resids(y, mu, w)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0))
        raise BayesmixError(f"unknown residual type {type!r}; choose response, deviance, "
                            "pearson or working")

    def predict(self, newdata: pd.DataFrame | None = None, type: str = "link",
                se_fit: bool = False):
        """Predictions on the link scale (type="link") or the response scale
        (type="response"); with se_fit=True a (prediction, standard error) pair
        (delta method on the response scale)."""
        if type not in ("link", "response"):
            raise BayesmixError(f"type must be 'link' or 'response', not {type!r}")
        if newdata is None:
            X = self.design.X
            eta = self.irls.eta.copy()
        else:
            nd = design_for_newdata(self.design, newdata, random=False)
            X = nd.X
            eta = X @ self.irls.beta
            if nd.offset is not None:
                eta = eta + nd.offset
        pred = eta if type == "link" else self.family.link.linkinv(eta)
        if not se_fit:
            return pred
        V = self.vcov().to_numpy()
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
        if type == "response":
            se = se * np.abs(self.family.link.mu_eta(eta))
        return pred, se

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """(nsim, n) responses from the fitted model: gaussian with variance
        deviance/df.residual/weights (R's simulate.lm), binomial successes out of
        the trials, poisson counts, Gamma with shape 1/dispersion."""
        rng = np.random.default_rng(seed)
        mu, w = self.irls.mu, self.data.prior_weights
        n = len(mu)
        name = self.family.name
        trials, phi = 1.0, None
        if name == "gaussian":
            with np.errstate(divide="ignore"):
                phi = np.sqrt(self.deviance() / self.df_residual() / w)
        elif name == "binomial":
            trials = self.data.n if self.design.formula.cbind is not None else np.ones(n)
        elif name == "Gamma":
            phi = 1 / self.dispersion()
        elif name != "poisson":
            raise BayesmixError(f"simulate() is not implemented for family {name}")
        # the family's draws (bayesmix.families), nsim rows
        return self.design.family.draw(rng, np.broadcast_to(mu, (nsim, n)), trials, phi)

    # -- printing ----------------------------------------------------------
    def call(self) -> str:
        """R's call, e.g. lm(formula = y ~ x, data = d)."""
        parts = [f"formula = {self.design.formula.text.strip()}"]
        if self.fitter == "glm":
            fam = self.design.family
            default = get_family(fam.name).link == fam.link
            rname = "binomial" if fam.name == "bernoulli" else fam.name
            if not (rname == "gaussian" and default):  # glm's default family
                parts.append(f"family = {rname}" if default
                             else f'family = {rname}(link = "{fam.link}")')
        if self.data_name:
            parts.append(f"data = {self.data_name}")
        return f"{self.fitter}({', '.join(parts)})"

    def summary(self) -> "GlmSummary":
        return GlmSummary(self)

    def display(self, digits: int = 2) -> Display:
        """arm's display(): coef.est and coef.se, n and k, then residual sd and
        R-squared (lm) or residual and null deviance (glm)."""
        se = self.se()
        rows = [(name, est, se[name]) for name, est in self.fixef().items()]
        n, k = self.nobs(), self.rank
        if self.fitter == "lm":
            footer = ["---", f"n = {n}, k = {k}",
                      f"residual sd = {self.sigma():.{digits}f}, "
                      f"R-Squared = {self.r_squared():.2f}"]
        else:
            dev, null = self.deviance(), self.null_deviance()
            footer = ["---", f"  n = {self.rank + self.df_residual()}, k = {k}",
                      f"  residual deviance = {dev:.1f}, null deviance = {null:.1f} "
                      f"(difference = {null - dev:.1f})"]
            disp = self.dispersion()
            if disp != 1:
                footer.append(f"  overdispersion parameter = {disp:.1f}")
                if self.family.name == "gaussian":
                    footer.append(f"  residual sd is sqrt(overdispersion) = "
                                  f"{np.sqrt(disp):.{digits}f}")
        return Display(display_text(self.call(), rows, footer=footer))

    def __repr__(self) -> str:
        fam = self.design.family
        what = "" if self.fitter == "lm" else f" {fam}"
        return (f"<GlmFit {self.fitter}{what}: {self.design.formula.text.strip()}; "
                f"n = {self.nobs()}, deviance {self.deviance():.6g}, AIC {self.aic():.6g}>")

    def _repr_html_(self) -> str:
        """A notebook shows the summary (R's printout in a monospace block)."""
        return self.summary()._repr_html_()


class GlmSummary:
    """R's summary.lm / summary.glm printout (R 4.2 layout)."""

    def __init__(self, fit: GlmFit):
        self.fit = fit

    @property
    def coefficients(self) -> pd.DataFrame:
        return self.fit.coef_table()

    def _coef_block(self, digits: int) -> list[str]:
        f = self.fit
        table = f.coef_table()
        full = table.reindex(list(f.design.fixed_spec.column_names))
        ns = len(f.aliased)
        head = (f"Coefficients: ({ns} not defined because of singularities)" if ns
                else "Coefficients:")
        return [head, coefmat_text(full, digits=digits)]

    def __str__(self) -> str:
        f = self.fit
        digits = 4
        lines = ["", "Call:", f.call(), ""]
        if f.fitter == "lm":
            w = f.data.prior_weights
            keep = w != 0
            res = (np.sqrt(w) * (f.data.y - f.irls.mu))[keep]
            weighted = f.design.weights is not None and np.ptp(w) > 0
            lines.append(("Weighted " if weighted else "") + "Residuals:")
            rdf = f.df_residual()
            if rdf > 5:
                q = zapsmall(np.quantile(res, [0, .25, .5, .75, 1]), digits + 1)
                lines.append(print_named(q, ["Min", "1Q", "Median", "3Q", "Max"], digits))
            elif rdf > 0:
                lines.append(print_named(res, [str(i + 1) for i in range(len(res))], digits))
            else:
                lines.append(f"ALL {f.rank} residuals are 0: no residual degrees of freedom!")
            lines.append("")
            lines += self._coef_block(digits)
            lines.append("")
            lines.append(f"Residual standard error: {format1(signif(f.sigma(), digits))} "
                         f"on {rdf} degrees of freedom")
            fs = f.fstatistic()
            if fs is not None:
                lines.append(f"Multiple R-squared:  {format_c(f.r_squared(), digits)},\t"
                             f"Adjusted R-squared:  {format_c(f.adj_r_squared(), digits)} ")
                lines.append(f"F-statistic: {format_c(fs['value'], digits)} on {fs['numdf']} "
                             f"and {fs['dendf']} DF,  p-value: "
                             f"{format_pval([fs['p_value']], digits)[0]}")
        else:
            lines.append("Deviance Residuals: ")
            dres = f.residuals("deviance")[f.data.prior_weights != 0]
            if f.df_residual() > 5:
                q = zapsmall(np.quantile(dres, [0, .25, .5, .75, 1]), digits + 1)
                lines.append(print_named(q, ["Min", "1Q", "Median", "3Q", "Max"], digits,
                                         gap=2))
            else:
                lines.append(print_named(zapsmall(dres, digits + 1),
                                         [str(i + 1) for i in range(len(dres))], digits, gap=2))
            lines.append("")
            lines += self._coef_block(digits)
            rname = f.family.name
            lines.append("")
            lines.append(f"(Dispersion parameter for {rname} family taken to be "
                         f"{format1(f.dispersion())})")
            lines.append("")
            devs = format_real([f.null_deviance(), f.deviance()], max(5, digits + 1))
            dfs = [str(f.df_null), str(f.df_residual())]
            wdf = max(map(len, dfs))
            for label, d, k in zip(["    Null", "Residual"], devs, dfs):
                lines.append(f"{label} deviance: {d}  on {k.rjust(wdf)}  degrees of freedom")
            lines.append(f"AIC: {format1(f.aic(), max(4, digits + 1)).strip()}")
            lines.append("")
            lines.append(f"Number of Fisher Scoring iterations: {f.iterations}")
        lines.append("")  # print() adds the final newline: R's trailing blank line
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_pre(str(self))
