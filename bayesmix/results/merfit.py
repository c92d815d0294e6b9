"""Accessors shared by the lmer and glmer results (lme4's merMod methods).

Both results hold `design` and `estimates` with the same per-term fields
(beta, vcov, theta, factors, varcorr_*, ranef, condsd, logLik, n_params)."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MerFitMixin:
    has_scale = True  # whether varcorr() lists a residual row

    def export(self, path: str) -> str:
        """Write a reproducible Stan bundle (see bayesmix.export)."""
        from ..export import export
        return export(self, path)

    @property
    def theta(self) -> pd.Series:
        names = []
        for t in self.design.terms:
            for j in range(t.p):
                for i in range(j, t.p):
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
            sds.setdefault(t.group, []).append(pd.DataFrame(
                self.estimates.condsd[k], index=list(t.levels), columns=list(t.coef_names)))
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

    def is_singular(self, tol: float = 1e-4) -> bool:
        return any(np.any(np.abs(np.diag(T)) < tol) for T in self.estimates.factors)
