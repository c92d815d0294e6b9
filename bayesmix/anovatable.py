"""Model comparison: R's anova() for nested lm/glm fits and lme4's
likelihood-ratio table for mixed fits."""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BayesmixError, user_stacklevel
from .results.anova import AnovaTable
from .results.glm import GlmFit

REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"


def _is_mixed(fit: Any) -> bool:
    # distributional ML fits (kind "dist_ml") join lme4's likelihood-ratio table
    return hasattr(fit, "reml") or getattr(fit, "kind", None) == "dist_ml"


def _nobs(fit: Any) -> int:
    return int(fit.nobs())


def _formula_text(fit: Any) -> str:
    f = fit.design.formula
    return str(getattr(f, "text", None) or getattr(f, "formula", f)).strip()


def _response_text(fit: Any) -> str:
    f = fit.design.formula
    if not hasattr(f, "cbind"):  # a distributional formula
        return _formula_text(fit).split("~")[0].strip()
    return f"cbind({f.cbind[0]}, {f.cbind[1]})" if f.cbind else f.response.strip()


def _check_same_data(fits: Sequence[Any], names: Sequence[str]) -> None:
    ns = [_nobs(f) for f in fits]
    if len(set(ns)) > 1:
        sizes = ", ".join(f"{n}: {k}" for n, k in zip(names, ns))
        raise BayesmixError("models were not all fitted to the same size of dataset "
                            f"(number of observations {sizes}); fit every model to the "
                            "same rows (check missing values in the variables each model uses)")
    y0 = np.asarray(fits[0].design.y)
    for name, f in zip(names[1:], fits[1:]):
        if not np.array_equal(np.asarray(f.design.y), y0):
            raise BayesmixError(f"models were not fitted to the same data: the response of "
                                f"{name} ({_response_text(f)}) differs from that of {names[0]} "
                                f"({_response_text(fits[0])})")


def anova(*fits: Any, test: str | None = None, names: Sequence[str] | None = None,
          refit: bool = True, data_name: str | None = None, bootstrap: int | None = None,
          seed: Any = None, executor: Any = None, ddf: str | None = "Satterthwaite",
          type: int | str = 3) -> AnovaTable:
    """Compare nested fits, like R's anova(m1, m2, ...).

    lm/glm fits (bayesmix GlmFit): R's table of residual degrees of freedom
    and residual sum of squares / deviance with an F test (lm's default;
    test="Chisq" for a likelihood-ratio chi-square). For glm fits test=None
    picks "Chisq" when the dispersion is known (binomial, poisson) and "F"
    otherwise (R >= 4.4's default); test="none" gives no test.

    Mixed fits (any fit with a `reml` attribute; lm/glm fits may be mixed
    in): lme4's likelihood-ratio table ordered by the number of parameters
    (npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)); REML fits
    are first refitted by maximum likelihood (message "refitting model(s)
    with ML (instead of REML)") unless refit=False.

    names: row labels (default m1, m2, ... in argument order for mixed
    comparisons, 1, 2, ... for lm/glm tables as R).

    One lmer fit, anova(fit): lmerTest's type III table (Sum Sq, Mean Sq, NumDF, DenDF,
    F value, Pr(>F)) with ddf="Satterthwaite" (default) or "Kenward-Roger"; see
    bayesmix.inference.

    bootstrap=N (two mixed fits): also a parametric-bootstrap likelihood-ratio
    test like pbkrtest's PBmodcomp -- N responses simulated from the smaller
    (ML) fit, both models refitted, p = (1 + #{LRT* >= LRT}) / (1 + N) in the
    column "Pr(PB)"; reproducible from seed= on any executor= (see
    bayesmix.bootstrap.pb_modcomp; the details are in the table's .bootstrap)."""
    if len(fits) == 1 and isinstance(fits[0], (list, tuple)):
        fits = tuple(fits[0])
    if len(fits) == 1 and getattr(fits[0], "kind", None) == "lmer":
        # one linear mixed fit: lmerTest's type III table (bayesmix.inference.anova)
        from .inference.anova import anova_type3
        return anova_type3(fits[0], ddf=ddf, type=type)
    if len(fits) < 2:
        raise BayesmixError("anova() compares two or more fitted models, e.g. anova(m1, m2)")
    if names is not None and len(names) != len(fits):
        raise BayesmixError(f"names has {len(names)} entries for {len(fits)} models")
    for i, f in enumerate(fits):
        if not (hasattr(f, "loglik") and hasattr(f, "design")):
            raise BayesmixError(f"argument {i + 1} of anova() is not a fitted model "
                                f"({type(f).__name__})")
    if any(_is_mixed(f) for f in fits):
        labels = list(names) if names is not None else [f"m{i + 1}" for i in range(len(fits))]
        out = _anova_lrt(list(fits), labels, refit, data_name)
        if bootstrap:
            _add_pb_test(out, out.__dict__.pop("_fits"), bootstrap, seed, executor)
        return out
    if bootstrap:
        raise BayesmixError("anova(..., bootstrap=N) is a test for mixed fits; lm/glm "
                            "comparisons have exact or chi-square tests")
    labels = list(names) if names is not None else [str(i + 1) for i in range(len(fits))]
    return _anova_glm(list(fits), labels, test)


# ---------------------------------------------------------------- lm / glm


def _anova_glm(fits: list[GlmFit], labels: list[str], test: str | None) -> AnovaTable:
    _check_same_data(fits, labels)
    is_lm = all(f.fitter == "lm" for f in fits)
    resdf = np.array([f.df_residual() for f in fits], dtype=float)
    resdev = np.array([f.deviance() for f in fits])
    df = np.concatenate([[np.nan], -np.diff(resdf)])
    dev = np.concatenate([[np.nan], -np.diff(resdev)])
    big = int(np.argmin(resdf))  # R's order(resdf)[1]: the first of the largest models
    if is_lm:
        cols = ["Res.Df", "RSS", "Df", "Sum of Sq"]
        title = "Analysis of Variance Table"
        if test is None:
            test = "F"
        scale = resdev[big] / resdf[big]
        df_scale = resdf[big]
    else:
        cols = ["Resid. Df", "Resid. Dev", "Df", "Deviance"]
        title = "Analysis of Deviance Table"
        scale = fits[big].dispersion()
        df_scale = np.inf if scale == 1 else float(np.min(resdf))
        if test is None:
            test = "Chisq" if fits[big].family.fixed_dispersion else "F"
    table = pd.DataFrame({cols[0]: resdf, cols[1]: resdev, cols[2]: df, cols[3]: dev},
                         index=labels)
    test = "none" if test is False else str(test)
    if test in ("F",):
        if not np.isfinite(df_scale):
            import warnings
            fam = fits[big].family.name
            warnings.warn(f"using F test with a '{fam}' family is inappropriate"
                          if fam in ("binomial", "poisson") else
                          "using F test with a fixed dispersion is inappropriate",
                          stacklevel=user_stacklevel())
        with np.errstate(invalid="ignore", divide="ignore"):
            F = (dev / df) / scale
        F[(df == 0) | (F < 0)] = np.nan
        table["F"] = F
        table["Pr(>F)"] = stats.f.sf(F, np.abs(df), df_scale)
    elif test in ("Chisq", "LRT"):
        with np.errstate(invalid="ignore"):
            vals = dev / scale * np.sign(df)
        vals[(df == 0) | (vals < 0)] = np.nan
        table["Pr(>Chi)"] = stats.chi2.sf(vals, np.abs(df))
    elif test.lower() != "none":
        raise BayesmixError(f"unknown test {test!r}; choose 'F', 'Chisq' (or 'LRT') or 'none'")
    width = len(str(len(fits)))
    topnote = [f"Model {str(i + 1).rjust(width)}: {f.design.formula.text.strip()}"
               for i, f in enumerate(fits)]
    out = AnovaTable(table)
    out.heading = [title, "", *topnote]
    out.refitted = []
    return out


# ---------------------------------------------------------------- mixed: likelihood ratio


def _refit_ml(fit: Any) -> Any:
    if hasattr(fit, "refit_ml"):
        return fit.refit_ml()
    if getattr(fit, "kind", None) == "lmer":
        from .ml import fit_lmer
        return fit_lmer(fit.design, reml=False)
    raise BayesmixError(f"cannot refit {type(fit).__name__} by maximum likelihood; "
                        "fit it with method='ml' (REML=False) and compare again")


def _anova_lrt(fits: list[Any], labels: list[str], refit: bool,
               data_name: str | None) -> AnovaTable:
    _check_same_data(fits, labels)
    reml = [bool(getattr(f, "reml", False)) for f in fits]
    refitted: list[str] = []
    if refit:
        if any(reml):
            print(REFIT_MESSAGE, file=sys.stderr)
            fits = [_refit_ml(f) if r else f for f, r in zip(fits, reml)]
            refitted = [lab for lab, r in zip(labels, reml) if r]
    elif any(reml) and not all(reml):
        import warnings
        warnings.warn("some models fit with REML = TRUE, some not", stacklevel=user_stacklevel())
    npar = np.array([f.df() for f in fits], dtype=float)
    order = np.argsort(npar, kind="stable")
    fits = [fits[i] for i in order]
    labels = [labels[i] for i in order]
    npar = npar[order]
    llk = np.array([f.loglik() for f in fits])
    n = np.array([_nobs(f) for f in fits], dtype=float)
    chisq = 2 * np.maximum(0, np.concatenate([[np.nan], np.diff(llk)]))
    dfc = np.concatenate([[np.nan], np.diff(npar)])
    with np.errstate(invalid="ignore"):
        p = np.where(dfc == 0, np.nan, stats.chi2.sf(chisq, dfc))
    table = pd.DataFrame({
        "npar": npar, "AIC": -2 * llk + 2 * npar, "BIC": -2 * llk + np.log(n) * npar,
        "logLik": llk, "deviance": -2 * llk, "Chisq": chisq, "Df": dfc, "Pr(>Chisq)": p,
    }, index=labels)
    if data_name is None:
        data_name = next((getattr(f, "data_name", None) for f in fits
                          if getattr(f, "data_name", None)), None)
    heading = ([f"Data: {data_name}"] if data_name else []) + ["Models:"]
    heading += [f"{lab}: {_formula_text(f)}" + (f" ({f.family.name})" if getattr(f, "kind", None) == "dist_ml"
                                                 else "") for lab, f in zip(labels, fits)]
    out = AnovaTable(table)
    out.heading = heading
    out.refitted = refitted
    object.__setattr__(out, "_fits", fits)  # the (ML) fits in table order, for bootstrap=
    return out


def _add_pb_test(out: AnovaTable, fits: list, nsim: int, seed: Any, executor: Any) -> None:
    """PBmodcomp for a two-model likelihood-ratio table: adds the column Pr(PB)."""
    if len(fits) != 2:
        raise BayesmixError("anova(..., bootstrap=N) compares exactly two mixed fits")
    from .parboot import pb_modcomp
    pb = pb_modcomp(fits[0], fits[1], nsim=int(nsim), seed=seed, executor=executor)
    out["Pr(PB)"] = [np.nan, pb.p_value]
    out.bootstrap = pb
    out.heading = list(out.heading) + [
        f"Parametric bootstrap (PBmodcomp): {len(pb.ref)} samples from the smaller model, "
        f"{pb.n_used} used, {pb.n_extreme} with LRT* >= {pb.stat:.4g}"]
