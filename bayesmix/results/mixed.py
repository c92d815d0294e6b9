"""The result of an lmer-equivalent fit: lme4's accessors and printed summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..design import Design
from ..engine import RunResult
from ..lmm import LmmEstimates
from ..registry import COEF_TABLE, NORMALIZE_DDF, operation
from .merfit import MerFitMixin, summary_body
from .format import display_text, fmt_num, html_pre


@dataclass(frozen=True, eq=False)
class MixedFit(MerFitMixin):
    """lmer fit: REML or ML estimates at the optimum of Stan's optimizer."""
    design: Design
    estimates: LmmEstimates
    reml: bool
    run: RunResult
    gradient: np.ndarray          # deviance gradient in theta at the optimum
    converged: bool
    stan_data: dict = field(repr=False)
    objective_stan: float = float("nan")  # -2 lp__ reported by Stan
    stan_code: str = field(default="", repr=False)
    inits: dict | None = field(default=None, repr=False)
    timings: dict = field(default_factory=dict, repr=False)  # seconds per stage (ml.fit_lmer)

    kind = "lmer"

    def export_meta(self) -> dict:
        return {"reml": self.reml}

    # -- lme4 accessors (the shared ones are in MerFitMixin) ------------------

    @property
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    def coef_table(self, ddf: str | None = "Satterthwaite") -> pd.DataFrame:
        """Fixed-effects table. ``ddf="Satterthwaite"`` (default) or ``"Kenward-Roger"``:
        lmerTest's columns Estimate, Std. Error, df, t value, Pr(>|t|) (Kenward-Roger with
        pbkrtest's adjusted standard errors; REML fits only); ``ddf=None``: lme4's table
        (Estimate, Std. Error, t value). See bayesmix.inference and docs/inference.md."""
        return operation(COEF_TABLE)(self, ddf)

    def sigma(self) -> float:
        return float(self.estimates.sigma)

    def deviance(self) -> float | None:
        """-2 logLik for ML fits; None for REML fits (use reml_criterion()), as lme4."""
        return None if self.reml else float(self.estimates.deviance_ml)

    def reml_criterion(self) -> float:
        return float(self.estimates.reml_crit)

    def fitted(self) -> np.ndarray:
        return self.estimates.fitted

    def residuals(self) -> np.ndarray:
        return self.design.y - self.fitted()

    # -- predictions and simulation ---------------------------------------
    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False) -> np.ndarray:
        """Predictions with all random effects (re_form=None), none ("~0" or
        NA-like), or a subset given as a formula of bars, e.g. "~(1|school)"."""
        return self._linear_predictor(newdata, re_form, allow_new_levels)

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """Responses simulated from the fitted model (new random effects each time)."""
        rng = np.random.default_rng(seed)
        n = self.nobs()
        out = np.empty((nsim, n))
        base = self.design.X @ self.estimates.beta
        if self.design.offset is not None:
            base = base + self.design.offset
        for s in range(nsim):
            eta = base.copy()
            for k, t in enumerate(self.design.terms):
                cov = self.estimates.varcorr_cov[k]
                b = rng.multivariate_normal(np.zeros(t.p), cov, size=t.n_levels,
                                            method="cholesky") if t.p else None
                eta += np.einsum("ij,ij->i", t.Z, b[t.index])
            out[s] = eta + rng.normal(0, self.sigma(), size=n)
        return out

    # -- printing ----------------------------------------------------------
    def summary(self, ddf: str | None = "Satterthwaite") -> "MixedSummary":
        """lmerTest's summary: lme4's layout with df and Pr(>|t|) columns from
        Satterthwaite's (default) or Kenward-Roger's method; ``ddf=None`` gives lme4's own
        summary (Estimate, Std. Error, t value)."""
        return MixedSummary(self, ddf=ddf)

    def display(self) -> "Display":
        from .format import Display
        fe = self.fixef()
        rows = [(name, fe[name], se) for name, se in zip(fe.index, self.estimates.se)]
        vc = self.varcorr()
        err = [(r.grp, r.var1 if isinstance(r.var1, str) else "", r.sdcor)
               for r in vc.itertuples() if not isinstance(r.var2, str)]
        corr = [(r.grp, f"{r.var1}:{r.var2}", r.sdcor) for r in vc.itertuples()
                if isinstance(r.var2, str)]
        # DIC as arm::display reports it for lmer fits: deviance at the ML
        # estimate plus twice the effective number of parameters
        footer = [f"number of obs: {self.nobs()}, groups: "
                  + ", ".join(f"{g}, {n}" for g, n in self.ngrps().items()),
                  f"AIC = {fmt_num(self.aic(), 1)}, DIC = "
                  f"{fmt_num(self.estimates.deviance_ml + 2 * self.df(), 1)}",
                  f"deviance = {fmt_num(self.estimates.deviance_ml, 1)}"]
        return Display(display_text(self._call(), rows, err, corr, footer))

    def _call(self) -> str:
        return f"lmer(formula = {self.design.formula.text}, REML = {self.reml})"

    def __repr__(self) -> str:
        return (f"<MixedFit {self.method}: {self.design.formula.text}; "
                f"logLik {self.loglik():.4f}, sigma {self.sigma():.4g}>")

    def _repr_html_(self) -> str:
        """A notebook shows the summary (R's printout in a monospace block)."""
        return self.summary()._repr_html_()


class MixedSummary:
    """lme4's summary(lmer) layout, printable and rendered as HTML in notebooks."""

    def __init__(self, fit: MixedFit, ddf: str | None = "Satterthwaite"):
        self.fit = fit
        self.ddf = operation(NORMALIZE_DDF)(ddf)
        self._table = fit.coef_table(ddf=self.ddf)  # errors (KR on an ML fit) surface here

    def coef_table(self) -> pd.DataFrame:
        return self._table

    def __str__(self) -> str:
        f, est = self.fit, self.fit.estimates
        head = (f"Linear mixed model fit by "
                f"{'REML' if f.reml else 'maximum likelihood'} (Stan L-BFGS)")
        if self.ddf is not None:
            head += f". t-tests use {self.ddf}'s method [lmerModLmerTest]"
        lines = [head, f"Formula: {f.design.formula.text}", ""]
        if f.reml:
            lines.append(f"REML criterion at convergence: {est.reml_crit:.1f}")
        else:
            tab = pd.DataFrame({"AIC": [f.aic()], "BIC": [f.bic()], "logLik": [f.loglik()],
                                "deviance": [est.deviance_ml],
                                "df.resid": [f.nobs() - f.df()]})
            lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        res = f.residuals() / f.sigma()
        q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1])
        lines += ["", "Scaled residuals: ",
                  pd.DataFrame([q], columns=["Min", "1Q", "Median", "3Q", "Max"])
                  .to_string(index=False, float_format=lambda v: f"{v:.4f}"), "",
                  *summary_body(f, coef_table=self.coef_table())]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_pre(str(self))
