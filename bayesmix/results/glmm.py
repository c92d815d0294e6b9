"""The result of a glmer-equivalent fit (Laplace ML): lme4's accessors and printed summary.

The same methods as `MixedFit` (the lmer result): fixef, coef_table, vcov, varcorr, ranef,
coef, sigma, theta, loglik, aic, bic, deviance, nobs, ngrps, is_singular, confint, predict,
fitted, residuals, simulate, summary, display, export; plus nb_theta (glmer.nb) and
minus2loglik (summary's 'deviance')."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..design import Design
from ..engine import RunResult
from .format import display_text, fmt_num, html_pre
from .merfit import MerFitMixin, summary_body



@dataclass(frozen=True, eq=False)
class GlmmFit(MerFitMixin):
    """glmer fit: Laplace maximum likelihood estimates at the optimum of Stan's optimizer."""
    design: Design
    problem: Any                 # bayesmix.lmm.laplace.GlmmProblem (also its link and residuals)
    estimates: Any               # bayesmix.lmm.laplace.GlmmEstimates
    run: RunResult
    converged: bool
    stan_data: dict = field(repr=False)
    inits: dict | None = field(repr=False, default=None)
    objective_stan: float = float("nan")   # lp__ reported by Stan (= logLik)
    stan_code: str = field(default="", repr=False)
    timing: dict = field(default_factory=dict)  # seconds: setup, optimize, estimates, total

    kind = "glmer"
    method = "Laplace"
    reml = False

    @property
    def timings(self) -> dict:
        """Seconds per stage, named as lmer fits name them (see ml.fit_lmer)."""
        return self.timing

    def export_meta(self) -> dict:
        # the driver's gradient and Hessian at the optimum (CSV outputs do not hold them)
        lines = [ln for ln in (self.run.console or "").splitlines()
                 if ln.startswith(("optimum_gradient = ", "optimum_hessian = "))]
        return {"nAGQ": 1, "optimum_lines": lines}

    # -- lme4 accessors ----------------------------------------------------
    @property
    def family(self):
        return self.design.family

    @property
    def nb_theta(self) -> float | None:
        """glmer.nb's theta (Var = mu + mu^2 / theta); None for other families."""
        return float(self.estimates.phi) if self.family.name == "negbinomial" else None

    def coef_table(self) -> pd.DataFrame:
        est, se = self.estimates.beta, self.estimates.se
        z = est / se
        return pd.DataFrame({"Estimate": est, "Std. Error": se, "z value": z,
                             "Pr(>|z|)": 2 * stats.norm.sf(np.abs(z))},
                            index=list(self.design.X_names))

    def sigma(self) -> float:
        """1 for families without a scale parameter (binomial, poisson, negative binomial);
        for Gamma lme4's sqrt((Pearson chi^2 + ||u||^2) / n)."""
        return float(self.estimates.sigma)

    @property
    def has_scale(self) -> bool:
        return self.family.name == "Gamma"

    def loglik(self) -> float:
        """The Laplace approximation of the log likelihood at the optimum (lme4's logLik)."""
        return float(self.estimates.logLik)

    def deviance(self) -> float:
        """lme4's deviance() for glmer: the sum of squared deviance residuals at the
        conditional modes (summary()'s 'deviance' is -2 logLik, see minus2loglik())."""
        return float(np.sum(self.estimates.deviance_resid ** 2))

    def minus2loglik(self) -> float:
        return -2 * self.loglik()

    def fitted(self) -> np.ndarray:
        """Conditional means on the response scale (probabilities for binomial)."""
        return self.estimates.mu

    def residuals(self, type: str = "deviance") -> np.ndarray:
        """Residuals like lme4: "deviance" (default), "pearson", "response", "working", or
        "scaled_pearson" (Pearson over sigma, the summary's scaled residuals)."""
        prob, mu = self.problem, self.estimates.mu
        if type == "deviance":
            return self.estimates.deviance_resid
        if type == "pearson":
            return prob.pearson_residuals(mu, self.estimates.phi)
        if type == "scaled_pearson":
            return self.residuals("pearson") / self.sigma()
        if type == "response":
            if prob.family in ("binomial", "bernoulli"):
                return prob.y / prob.ntr - mu
            return prob.y - mu
        if type == "working":
            return prob.working_residuals(self.estimates.eta, self.estimates.phi)
        raise ValueError(f"unknown residual type {type!r}; choose one of: deviance, pearson, "
                         "response, working, scaled_pearson")

    # -- predictions -------------------------------------------------------
    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                type: str = "link", allow_new_levels: bool = False) -> np.ndarray:
        """Predictions on the link (default, as lme4) or response scale, with all random
        effects (re_form=None), none ("~0" or NA-like) or a subset, e.g. "~(1|herd)"."""
        if type not in ("link", "response"):
            raise ValueError(f"unknown prediction type {type!r}; choose one of: link, response")
        eta = self._linear_predictor(newdata, re_form, allow_new_levels)
        return eta if type == "link" else self.problem.linkinv(eta)

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """Responses (nsim x n) simulated from the fitted model with new random effects
        b_k ~ N(0, T_k T_k') (the Laplace model's scale; successes for binomial)."""
        rng = np.random.default_rng(seed)
        prob, est = self.problem, self.estimates
        base = prob.X @ est.beta + prob.offset
        out = np.empty((nsim, prob.n))
        # the family's draws (bayesmix.families); Gamma with lme4's dispersion sigma^2
        fam = self.design.family
        phi = {"negbinomial": est.phi, "Gamma": 1 / self.sigma() ** 2}.get(fam.name)
        for s in range(nsim):
            eta = base.copy()
            for t, T in zip(self.design.terms, est.factors):
                b = rng.standard_normal((t.n_levels, t.p)) @ T.T
                eta += np.einsum("ij,ij->i", t.Z, b[t.index])
            mu = prob.linkinv(eta)
            out[s] = fam.draw(rng, mu, prob.ntr, phi)
        return out

    # -- printing ----------------------------------------------------------
    def family_label(self) -> str:
        name = self.family.name
        if name == "negbinomial":
            label = f"Negative Binomial({self.estimates.phi:.4f})"
        else:
            label = self.family.spec.r_name  # R's family name (binomial for bernoulli)
        return f"{label}  ( {self.family.link} )"

    def summary(self) -> "GlmmSummary":
        return GlmmSummary(self)

    def display(self):
        from .format import Display
        fe = self.fixef()
        rows = [(name, fe[name], se) for name, se in zip(fe.index, self.estimates.se)]
        vc = self.varcorr()
        err = [(r.grp, "" if pd.isna(r.var1) else r.var1, r.sdcor) for r in vc.itertuples()
               if pd.isna(r.var2)]
        if not self.has_scale:
            err.append(("Residual", "", 1.0))
        corr = [(r.grp, f"{r.var1}:{r.var2}", r.sdcor) for r in vc.itertuples()
                if not pd.isna(r.var2)]
        footer = [f"number of obs: {self.nobs()}, groups: "
                  + ", ".join(f"{g}, {n}" for g, n in self.ngrps().items()),
                  f"AIC = {fmt_num(self.aic(), 1)}",
                  f"deviance = {fmt_num(self.minus2loglik(), 1)}"]
        return Display(display_text(self._call(), rows, err, corr, footer))

    def _call(self) -> str:
        if self.family.name == "negbinomial":
            return f"glmer.nb(formula = {self.design.formula.text})"
        fam = self.family.spec.r_name
        return f"glmer(formula = {self.design.formula.text}, family = {fam}({self.family.link}))"

    def __repr__(self) -> str:
        return (f"<GlmmFit Laplace {self.family}: {self.design.formula.text}; "
                f"logLik {self.loglik():.4f}>")

    def _repr_html_(self) -> str:
        """A notebook shows the summary (R's printout in a monospace block)."""
        return self.summary()._repr_html_()


class GlmmSummary:
    """lme4's summary(glmer) layout, printable and rendered as HTML in notebooks."""

    def __init__(self, fit: GlmmFit):
        self.fit = fit

    def __str__(self) -> str:
        f = self.fit
        lines = ["Generalized linear mixed model fit by maximum likelihood (Laplace "
                 "Approximation, Stan L-BFGS)",
                 f" Family: {f.family_label()}",
                 f"Formula: {f.design.formula.text}", ""]
        tab = pd.DataFrame({"AIC": [f.aic()], "BIC": [f.bic()], "logLik": [f.loglik()],
                            "deviance": [f.minus2loglik()], "df.resid": [f.nobs() - f.df()]})
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        q = np.quantile(f.residuals("scaled_pearson"), [0, 0.25, 0.5, 0.75, 1])
        lines += ["", "Scaled residuals: ",
                  pd.DataFrame([q], columns=["Min", "1Q", "Median", "3Q", "Max"])
                  .to_string(index=False, float_format=lambda v: f"{v:.4f}"), "",
                  *summary_body(f)]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_pre(str(self))


