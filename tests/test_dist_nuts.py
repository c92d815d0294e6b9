"""NUTS for distributional models (stan/dist_nuts.stan, bayesmix.dist.nuts), against
independent references:

* the program's pointwise log_lik (stan/dist_functions.stan's densities) equals
  bayesmix.families' scipy-checked log_density at the draws' own parameters, for every family
  (short runs on 160-row subsets of the reference data; draws written with 18 significant
  digits so that the parameters are exact doubles): tolerance 1e-8, the rounding of two
  evaluation orders of the same formulas;
* recovery on four reference data sets (tests/reference/families, simulated in R, fitted by
  glmmTMB 1.1.5 / ordinal::clmm): every fixed effect within 4 posterior SD of the simulation
  truth, and within 0.5 posterior SD of the ML estimate. The priors are weak (flat b, intercept
  student_t(3, m, 2.5) with a scale ~20x the posterior SD), so the posterior is dominated by
  the likelihood; mean and mode then differ by skewness and by integrating over the SDs,
  O(1 / sqrt(groups)) of a posterior SD, and the Monte Carlo error of the mean is
  < 0.15 SD at the ESS of these runs. No divergent transitions;
* the default priors equal brms 2.18's (tests/reference/families/brms_priors.json) where brms
  puts them on the same parameter;
* hostile priors fail with a clear PriorError before anything compiles.

brms itself cannot run here (rstan cannot find Boost), so these are the references. One
compile (cached by code hash), short runs: ~1-2 min in all.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from bayesmix.design.dist import build_dist_design
from bayesmix.families import dpar_linkinv
from bayesmix.formula.distributional import bf
from bayesmix.priors import PriorError, prior

REF = Path(__file__).parent / "reference" / "families"
FITS = json.loads((REF / "family_fits.json").read_text())["cases"]
TRUTH = json.loads((REF / "family_truth.json").read_text())["cases"]
BRMS = json.loads((REF / "brms_priors.json").read_text())["cases"]

# exact inverse links of mu (bayesmix.families.LINKS clip at R's guards; not wanted here)
MU_INV = {"identity": lambda e: e, "log": np.exp, "logit": special.expit,
          "probit": special.ndtr, "cloglog": lambda e: -np.expm1(-np.exp(e))}

# (case, csv, formula, family, link): every family; links beyond the default where cheap
LOGLIK_CASES = [
    ("gaussian", "gaussian_sigma", bf("y ~ x + (1 | g)", sigma="~ x"), "gaussian", None),
    ("student", "student", "y ~ x + (1 | g)", "student", None),
    ("lognormal", "lognormal", "y ~ x + (1 | g)", "lognormal", None),
    ("beta", "beta", "y ~ x + (1 + x | g)", "beta", None),
    ("beta_cloglog", "beta", bf("y ~ x + (1 | g)", phi="~ x"), "beta", "cloglog"),
    ("beta_binomial", "beta_binomial", "cbind(y, trials - y) ~ x + (1 | g)", "beta_binomial",
     None),
    ("cumulative_logit", "cumulative_logit", "y ~ x + (1 | g)", "cumulative", "logit"),
    ("cumulative_probit", "cumulative_probit", "y ~ x + (1 | g)", "cumulative", "probit"),
    ("zip", "zero_inflated_poisson_zi_re", bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)"),
     "zero_inflated_poisson", None),
    ("zinb", "zero_inflated_negbinomial", bf("y ~ x + (1 | g)", zi="~ x"),
     "zero_inflated_negbinomial", None),
    ("hurdle_poisson", "hurdle_poisson", bf("y ~ x + (1 | g)", hu="~ x"), "hurdle_poisson",
     None),
    ("hurdle_negbinomial", "hurdle_negbinomial", "y ~ x + (1 | g)", "hurdle_negbinomial",
     None),
    ("negbinomial", "negbinomial_shape", bf("y ~ x + (1 | g)", shape="~ x"), "negbinomial",
     None),
    ("Gamma", "lognormal", bf("y ~ x + (1 | g)", shape="~ x"), "Gamma", "log"),
]


def _data(csv: str, rows: int | None = None) -> pd.DataFrame:
    d = pd.read_csv(REF / f"{csv}.csv")
    return d.iloc[:rows].reset_index(drop=True) if rows else d


def _fit(design, **kw):
    from bayesmix.dist.nuts import fit_dist_nuts
    args = dict(chains=2, iter_warmup=500, iter_sampling=500, seed=17, show_progress=False)
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_dist_nuts(design, **args)


def _param_name(design, dpar: str) -> str:
    params = design.family.spec.params
    return dpar if dpar in params else params[0]  # negbinomial's brms shape is its phi


def _reference_log_lik(design, fit) -> np.ndarray:
    """families.log_density at each draw's parameters."""
    mu, trials, kw = _draw_parameters(design, fit)
    return design.family.log_density(design.y[None, :], mu, trials, **kw)


def _draw_parameters(design, fit):
    """(mu, trials, other parameters) of each draw as families' functions take them, the
    linear predictors built in numpy from the restored coefficients (b_all, b_cutpoints) and
    the group-level effects (r_all)."""
    S = fit.chains * fit.ndraws
    b = fit.draws("b_all").reshape(S, -1)
    r = fit.draws("r_all").reshape(S, -1)
    eta, pos = {}, 0
    for p in design.predictors:
        k = p.X.shape[1]
        eta[p.dpar] = b[:, pos:pos + k] @ p.X.T
        pos += k
    if design.offset is not None:
        eta["mu"] = eta["mu"] + design.offset
    start = 0
    for t, d in zip(design.terms, design.term_predictor):
        block = r[:, start:start + t.p * t.n_levels].reshape(S, t.n_levels, t.p)
        eta[design.predictors[d].dpar] += np.einsum("snp,np->sn", block[:, t.index, :],
                                                    np.asarray(t.Z, float).reshape(design.n, -1))
        start += t.p * t.n_levels
    fam = design.family
    kw = {}
    for p in design.predictors[1:]:
        kw[_param_name(design, p.dpar)] = dpar_linkinv(p.link, eta[p.dpar])
    if fam.name == "cumulative":
        mu = eta["mu"]
        kw["cutpoints"] = fit.draws("b_cutpoints").reshape(S, 1, -1)
    else:
        mu = MU_INV[fam.link](eta["mu"])
    trials = 1.0 if design.trials is None else design.trials
    return mu, trials, kw


@pytest.mark.parametrize("case,csv,formula,family,link", LOGLIK_CASES,
                         ids=[c[0] for c in LOGLIK_CASES])
def test_log_lik_equals_families_log_density(case, csv, formula, family, link):
    design = build_dist_design(formula, _data(csv, 160), family if link is None
                               else _family(family, link))
    fit = _fit(design, chains=1, iter_warmup=150, iter_sampling=20, sig_figs=18,
               diagnostics=False)
    stan = fit.draws("log_lik").reshape(20, -1)
    ref = _reference_log_lik(design, fit)
    assert np.all(np.isfinite(stan))
    np.testing.assert_allclose(stan, ref, rtol=1e-8, atol=1e-8)
    # the fit's numpy log_lik (bayesmix.dist.predict from params()) agrees too
    np.testing.assert_allclose(fit.log_lik(), stan, rtol=1e-8, atol=1e-8)
    # posterior predictive draws lie in the response's support
    y_rep = fit.draws("y_rep").reshape(20, -1)
    support = design.family.spec.support
    if design.family.spec.discrete:
        assert np.all(y_rep == np.round(y_rep)) and np.all(y_rep >= 0)
    if support == "unit":
        assert np.all((y_rep >= 0) & (y_rep <= 1))
    elif support == "positive":
        assert np.all(y_rep > 0)
    elif support == "trials":
        assert np.all(y_rep <= design.trials)
    elif support == "ordinal":
        assert np.all((y_rep >= 1) & (y_rep <= len(design.categories)))
    # and follow the family's distribution: standardized by families.moments at each draw,
    # the 3200 values have mean 0 and variance 1 (SE ~0.02 and ~0.03-0.1 by the kurtosis;
    # tolerances 0.1 and 0.3); student's variance is skipped (nu may be below 4)
    mu, trials, kw = _draw_parameters(design, fit)
    mean, var = design.family.moments(mu, trials, **kw)
    z = (y_rep - mean) / np.sqrt(var)
    assert abs(z.mean()) < 0.1, z.mean()
    if family != "student":
        assert abs(z.var() - 1) < 0.3, z.var()


def _family(name, link):
    from bayesmix.families import get_family
    return get_family(name, link, fittable=False)


# ---------------------------------------------------------------- recovery


def _case_model(case: str):
    """(formula, family) of a reference case, from family_fits.json (our API's formulas)."""
    f = FITS[case]
    dpars = {k: v for k, v in f["formula"].items() if k != "formula"}
    formula = bf(f["formula"]["formula"], **dpars) if dpars else f["formula"]["formula"]
    family = _family(f["family"], f["link"]) if f["family"] == "cumulative" else f["family"]
    return formula, family


# every one of the 13 reference cases (issue #17: each family and each distributional
# parameter recovered by NUTS, 0 divergences)
RECOVERY = list(FITS)
# measured per-case numbers (printed with -s; docs/families.md's NUTS section)
MEASURED: dict[str, dict] = {}


def _link_value(dpar: str, value: float) -> float:
    """A constant parameter's natural value on its link scale (brms's links)."""
    if dpar in ("zi", "hu"):
        return float(special.logit(value))
    if dpar == "nu":
        return float(np.log(value - 1))
    return float(np.log(value))


def _references(case: str) -> dict[str, tuple[float, float]]:
    """fixef row -> (truth, ML estimate), brms's row names, link scales (constants such as
    nu, which glmmTMB reports only on its natural scale, via aux)."""
    fits, truth = FITS[case], TRUTH[case]
    out = {}
    for dpar, tab in fits["fixef"].items():
        for j, name in enumerate(tab["names"]):
            if dpar == "cutpoints":
                row, true = f"Intercept[{j + 1}]", truth["cutpoints"][j]
            else:
                label = "Intercept" if name == "(Intercept)" else name
                row = label if dpar == "mu" else f"{dpar}_{label}"
                if dpar == "mu":
                    true = truth["b"][name]
                elif f"b_{dpar}" in truth:
                    true = truth[f"b_{dpar}"][name]
                else:  # a constant parameter: its link-scale intercept
                    true = _link_value(dpar, truth[dpar])
            out[row] = (true, tab["estimate"][j])
    for dpar, aux in fits.get("aux", {}).items():
        row = f"{dpar}_Intercept"
        if row not in out:
            out[row] = (_link_value(dpar, truth[dpar]), _link_value(dpar, aux["value"]))
    return out


@pytest.mark.parametrize("case", RECOVERY)
def test_recovery_against_truth_and_ml(case):
    """NUTS on each reference data set with the default priors, 2 chains x (400 + 400).
    Bars: 0 divergent transitions; R-hat < 1.05 (not 1.01: with 2 chains of 400 draws the
    R-hat estimate itself scatters by ~0.01 around 1, so 1.01 would fail well-mixed runs by
    chance; 1.05 still catches chains stuck in different places); every fixed effect, every
    cutpoint and every constant parameter (link scale) within 4 posterior SD of the
    simulation truth and within 0.5 posterior SD of glmmTMB's / clmm's ML estimate (weak
    priors: flat b, intercepts student_t(3, m, >= 2.5), ~20x the posterior SD, so the
    likelihood dominates and mean and mode differ by skewness and by integrating over the
    SDs, O(1 / sqrt(groups)) of a posterior SD; the Monte Carlo SE of the mean is <= 0.12 SD
    at the runs' smallest bulk ESS, ~70). Fixed seed: the run is reproducible. Group SDs: within one posterior SD of the ML SD (their
    posteriors are skewed right of the mode and 30-40 groups inform them weakly)."""
    import time
    formula, family = _case_model(case)
    design = build_dist_design(formula, _data(case), family)
    t0 = time.perf_counter()
    fit = _fit(design, iter_warmup=400, iter_sampling=400)
    seconds = time.perf_counter() - t0
    div = fit.diagnostics().divergences
    fe = fit.fixef()
    refs = _references(case)
    assert set(refs) == set(fe.index), (sorted(refs), list(fe.index))
    z_truth = {r: abs(fe.loc[r, "Estimate"] - t) / fe.loc[r, "Est.Error"]
               for r, (t, _) in refs.items()}
    z_ml = {r: abs(fe.loc[r, "Estimate"] - m) / fe.loc[r, "Est.Error"]
            for r, (_, m) in refs.items()}
    MEASURED[case] = {"z_truth": max(z_truth.values()), "z_ml": max(z_ml.values()),
                      "divergences": div, "min_bulk_ess": float(fe["Bulk_ESS"].min()),
                      "max_rhat": float(fe["Rhat"].max()), "seconds": seconds}
    print(case, MEASURED[case])
    assert div == 0
    for row in refs:
        assert z_truth[row] < 4, (row, z_truth[row])
        assert z_ml[row] < 0.5, (row, z_ml[row])
        assert fe.loc[row, "Rhat"] < 1.05, (row, fe.loc[row, "Rhat"])
    vc = fit.varcorr()
    for dpar, groups in FITS[case]["varcorr"].items():
        for m, name in enumerate(groups["g"]["names"]):
            row = vc[(vc.dpar == dpar) & (vc.var1 == name) & vc.var2.isna()].iloc[0]
            draws = fit._sd[[k for k, (t, d) in enumerate(zip(design.terms,
                                                              design.term_predictor))
                             if design.predictors[d].dpar == dpar][0]][..., m]
            assert abs(row.sdcor - groups["g"]["sd"][m]) < draws.std(), (dpar, name)


def test_fit_accessors_and_arviz():
    """summary, ranef, to_arviz, loo and the prediction helpers on one small fit."""
    design = build_dist_design(bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)"),
                               _data("zero_inflated_poisson_zi_re", 400),
                               "zero_inflated_poisson")
    fit = _fit(design, iter_warmup=300, iter_sampling=200)
    text = str(fit.summary())
    for part in ("Family: zero_inflated_poisson", "mu = log; zi = logit", "zi ~ 1 + (1 | g)",
                 "sd(zi_Intercept)", "zi_Intercept", "Regression Coefficients:"):
        assert part in text
    idata = fit.to_arviz()
    for group in ("posterior", "log_likelihood", "posterior_predictive", "observed_data",
                  "sample_stats"):
        assert group in idata.groups()
    assert {"Intercept", "x", "zi_Intercept", "sd(1|g)", "sd(zi_1|g)", "1|g",
            "zi_1|g"} <= set(idata.posterior.data_vars)
    assert idata.log_likelihood["y"].shape == (2, 200, 400)
    S = 400
    assert fit.predict(seed=1).shape == (S, 400)
    assert fit.epred().shape == (S, 400)
    assert fit.linpred(dpar="zi").shape == (S, 400)
    assert set(fit.ranef()) == {"g", "g (zi)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a high Pareto k on a small data set
        loo = fit.loo()
    assert np.isfinite(loo.elpd_loo)
    # new data: population-level predictions of the expected count
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["new", "new"]})
    ep = fit.epred(new, re_form=np.nan)
    b = fit.params().beta
    zi = special.expit(b["zi"][:, 0])
    np.testing.assert_allclose(ep[:, 1], (1 - zi) * np.exp(b["mu"] @ [1.0, 1.0]), rtol=1e-12)


def test_constant_parameters_on_natural_scale():
    """student: nu (brms's gamma(2, 0.1) prior on nu) and sigma shown on their own scale."""
    design = build_dist_design("y ~ x + (1 | g)", _data("student"), "student")
    fit = _fit(design, iter_warmup=300, iter_sampling=300)
    s = fit.summary()
    assert list(s.family_pars.index) == ["sigma", "nu"]
    nu = fit.to_arviz().posterior["nu"].values
    np.testing.assert_allclose(nu, 1 + np.exp(fit._coef["nu"][..., 0]))
    # glmmTMB: sigma 0.777, nu 3.91 (truth 0.8, 5); the posteriors are right-skewed and
    # nu's prior pulls it up a little (weakly identified), hence 2 posterior SDs
    post = fit.to_arviz().posterior
    for name in ("sigma", "nu"):
        ml = FITS["student"]["aux"][name]["value"]
        assert abs(post[name].values.mean() - ml) < 2 * post[name].values.std(), name


# ---------------------------------------------------------------- priors


def _brms_rows(case):
    pr = BRMS[case]["priors"]
    return [dict(zip(pr, vals)) for vals in zip(*pr.values())]


@pytest.mark.parametrize("case,formula,family", [
    ("student", "y ~ x + (1 | g)", "student"),
    ("gaussian_sigma", bf("y ~ x + (1 | g)", sigma="~ x"), "gaussian"),
    ("zero_inflated_poisson_zi_re", bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)"),
     "zero_inflated_poisson"),
    ("cumulative_logit", "y ~ x + (1 | g)", "cumulative"),
    ("lognormal", "y ~ x + (1 | g)", "lognormal"),
    ("beta_binomial", "cbind(y, trials - y) ~ x + (1 | g)", "beta_binomial"),
])
def test_default_priors_match_brms(case, formula, family):
    """Where brms puts its default on the same parameter (b, the intercepts, sd, cutpoints,
    nu, zi), ours is the same distribution. (brms's constant sigma / phi / shape priors are
    on the natural scale; ours on the log scale: documented.)"""
    from bayesmix.dist.nuts import dist_prior_summary
    design = build_dist_design(formula, _data(case), family)
    ours = dist_prior_summary(design)
    brms = _brms_rows(case)

    def brms_prior(cls, coef="", group="", dpar=""):
        rows = [r for r in brms if r["class"] == cls and r["dpar"] == dpar]
        # most specific row with a prior set (brms leaves inherited ones empty)
        for want in ((coef, group), ("", group), ("", "")):
            for r in rows:
                if (r["coef"], r["group"]) == want and r["prior"]:
                    return r["prior"]
        return ""

    def norm(text):
        return "" if text == "flat" else text.replace(".0,", ",").replace(".0)", ")")

    checked = 0
    for _, row in ours.iterrows():
        cls = row["class"]
        coef = "Intercept" if row["coef"] == "(Intercept)" else row["coef"]
        if cls in ("sigma", "phi", "shape"):
            continue
        if row["dpar"] and cls != "nu" and not any(r["dpar"] == row["dpar"] for r in brms):
            continue  # a constant sigma / phi / shape: brms's prior is on its natural scale
        expect = brms_prior(cls, coef if cls != "sd" else "", row["group"], row["dpar"])
        if cls == "nu":
            expect = brms_prior("nu")  # both on nu itself
        if cls == "Intercept" and row["dpar"] == "" and row["coef"]:
            expect = brms_prior("Intercept")  # cumulative cutpoints: brms's class default
        assert norm(row["prior"]) == expect, (case, dict(row), expect)
        checked += 1
    assert checked >= 3


def test_hostile_priors_fail_before_compiling(monkeypatch):
    import bayesmix.engine as engine
    from bayesmix.dist.nuts import fit_dist_nuts

    def no_compile(*a, **k):
        raise AssertionError("compiled although the priors are invalid")

    monkeypatch.setattr(engine, "compile_model", no_compile)
    design = build_dist_design(bf("y ~ x + (1 | g)", sigma="~ x"), _data("gaussian_sigma"),
                               "gaussian")
    bad = [
        (prior("normal(0, 1)", cls="b", dpar="nu"), "no distributional parameter 'nu'"),
        (prior("normal(0, 1)", cls="b", dpar="zi", coef="x"), "no distributional parameter"),
        (prior("gamma(2, 0.1)", cls="nu"), "has no parameter 'nu'"),
        (prior("normal(0, 1)", cls="sigma"), "modelled by a formula"),
        (prior("normal(0, 1)", cls="b", coef="z", dpar="sigma"), "no coefficient 'z'"),
        (prior("normal(0, 1)", cls="sd", dpar="sigma"), "has no parameters of class 'sd'"),
        (prior("normal(0, 1)", cls="sd", group="h"), "no grouping factor 'h'"),
    ]
    for p, message in bad:
        with pytest.raises(PriorError, match=message):
            fit_dist_nuts(design, [p])
    with pytest.raises(PriorError, match="takes no dpar"):
        prior("normal(0, 1)", cls="sigma", dpar="sigma")
    # classic (single-predictor) models refuse dpar= with a pointer
    from bayesmix.design import build_design
    from bayesmix.priors import resolve_priors
    classic = build_design("y ~ x + (1 | g)", _data("gaussian_sigma"))
    with pytest.raises(PriorError, match="one linear predictor"):
        resolve_priors(classic, [prior("normal(0, 1)", cls="b", dpar="sigma")])


def test_user_priors_reach_the_right_rows():
    """dpar-targeted and natural-scale priors land in the program's prior rows (data)."""
    from bayesmix.dist.nuts import dist_prior_data
    from bayesmix.priors import PRIOR_CODES
    design = build_dist_design(bf("y ~ x + (1 | g)", sigma="~ x"), _data("gaussian_sigma"),
                               "gaussian")
    data = dist_prior_data(design, [prior("normal(0, 0.5)", cls="b", dpar="sigma"),
                                    prior("normal(1, 2)", cls="b", coef="x"),
                                    prior("exponential(2)", cls="sd", group="g")])
    # rows: mu Intercept, mu x, sigma Intercept, sigma x, sd(mu g)
    assert data["prior_dist"] == [PRIOR_CODES["student_t"], PRIOR_CODES["normal"],
                                  PRIOR_CODES["student_t"], PRIOR_CODES["normal"],
                                  PRIOR_CODES["exponential"]]
    assert data["prior_args"][3] == [0.0, 0.5, 0.0]
    assert data["prior_args"][1] == [1.0, 2.0, 0.0]
    design = build_dist_design("y ~ x + (1 | g)", _data("student"), "student")
    data = dist_prior_data(design, [prior("gamma(3, 0.2)", cls="nu"),
                                    prior("normal(0, 1)", cls="Intercept", dpar="sigma")])
    # the constant nu's intercept (row 4): its prior on nu itself, logm1's Jacobian (code 8)
    assert data["prior_scale"] == [0, 0, 0, 8]
    assert data["prior_dist"][3] == PRIOR_CODES["gamma"]
    assert data["prior_args"][2] == [0.0, 1.0, 0.0] and data["prior_scale"][2] == 0


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_cumulative_tails_are_stable(link):
    """log P(y = k) far in the tails (|eta| up to ~100: probabilities below e^-100 and within
    1e-20 of 1): the program's interval log-probabilities (log_inv_logit_diff; Phi
    differences taken from the far tail) equal families.log_density (scipy's log_ndtr /
    logaddexp) to 1e-8 relative. One transition with a step of 1e-14 from the extreme start
    keeps the draw there."""
    from bayesmix.dist.nuts import dist_nuts_code, dist_nuts_data
    from bayesmix.engine import compile_model
    design = build_dist_design("y ~ x + (1 | g)", _data(f"cumulative_{link}", 100),
                               _family("cumulative", link))
    data = dist_nuts_data(design)
    K = len(design.categories)
    inits = {"beta": np.array([40.0]), "sd_all": np.array([0.1]),
             "z_all": np.zeros(design.terms[0].n_levels),
             "cpc_raw": np.zeros(0), "cutpoints": np.linspace(-2, 2, K - 1)}
    model = compile_model(dist_nuts_code(), "dist_nuts")
    run = model.sample(data, chains=1, iter_warmup=0, iter_sampling=1, seed=3, inits=inits,
                       step_size=1e-14, sig_figs=18)
    row = run.optimum()  # the one draw, every digit

    def vec(name, n):
        return np.array([row[f"{name}[{i + 1}]"] for i in range(n)])

    nl = design.terms[0].n_levels
    eta = row["b_all[1]"] * design.predictors[0].X[:, 0] + vec("r_all", nl)[design.terms[0].index]
    ref = design.family.log_density(design.y, eta, cutpoints=vec("b_cutpoints", K - 1))
    stan = vec("log_lik", design.n)
    assert ref.min() < -100 and ref.max() > -1e-20  # both far tails are exercised
    np.testing.assert_allclose(stan, ref, rtol=1e-8)


def test_prior_only_needs_proper_priors(monkeypatch):
    import bayesmix.engine as engine
    from bayesmix.dist.nuts import fit_dist_nuts
    monkeypatch.setattr(engine, "compile_model", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("compiled")))
    design = build_dist_design("y ~ x + (1 | g)", _data("beta"), "beta")
    with pytest.raises(PriorError, match="flat: b x"):
        fit_dist_nuts(design, prior_only=True)


def test_prior_only_draws_follow_the_priors():
    """prior_only=True: the draws follow the declared priors (independent check of the prior
    rows and of the natural-scale Jacobian): x ~ normal(0, 1); the constant nu ~ brms's
    gamma(2, 0.1) on nu itself (mean 20, sd 14.1; truncation at 1 moves the mean by < 0.01).
    Tolerances: ~4 Monte Carlo SEs at the runs' ESS."""
    from scipy import stats
    design = build_dist_design("y ~ x + (1 | g)", _data("student", 200), "student")
    fit = _fit(design, iter_warmup=500, iter_sampling=1000,
               priors=[prior("normal(0, 1)", cls="b")], prior_only=True, diagnostics=False)
    x = fit.draws("b_all")[..., 1].reshape(-1)
    nu = fit.to_arviz().posterior["nu"].values.reshape(-1)
    assert abs(x.mean()) < 0.15 and abs(x.std() - 1) < 0.1
    assert abs(nu.mean() - 20) < 2.5
    # the whole distribution: Kolmogorov-Smirnov distance to gamma(2, 0.1) (rate), thinned
    assert stats.kstest(nu[::5], stats.gamma(2, scale=10).cdf).statistic < 0.1


@pytest.mark.parametrize("family", ["hurdle_poisson", "hurdle_negbinomial"])
def test_hurdle_draws_with_small_mean(family):
    """Where f(0) > 0.9 the program's zero-truncated draws walk the distribution function
    instead of rejecting: P(y = 1 | y > 0) of the posterior predictive draws equals the
    truncated count distribution's at each draw's parameters (binomial SE ~0.002 over
    S x n = 20 000 positive draws; tolerance 0.01)."""
    rng = np.random.default_rng(5)
    n = 400
    fam = _family(family, "log")
    # f(0) = 0.92 (Poisson mean 0.08) and 0.91 (NB mean 0.15, shape 0.1: P(y = 1 | y > 0)
    # ~0.6, so a walk that stopped early would show)
    nb = family == "hurdle_negbinomial"
    extra = {"shape": 0.1} if nb else {}
    y = fam.draw(rng, np.full(n, 0.15 if nb else 0.08), hu=0.3, **extra)
    design = build_dist_design("y ~ 1", pd.DataFrame({"y": y}), family)
    fit = _fit(design, chains=1, iter_warmup=300, iter_sampling=50, diagnostics=False)
    y_rep = fit.draws("y_rep").reshape(50, -1)
    mu, trials, kw = _draw_parameters(design, fit)
    kw.pop("hu")
    p1 = np.exp(fam.log_density(np.ones_like(mu), mu, trials, hu=np.zeros_like(mu), **kw))
    lf0 = (-mu if family == "hurdle_poisson" else -kw["shape"] * np.log1p(mu / kw["shape"]))
    assert (np.exp(lf0) > 0.9).mean() > 0.5  # mostly the walk, not the rejection sampler
    pos = y_rep > 0
    observed = (y_rep[pos] == 1).mean()
    expected = np.broadcast_to(p1, y_rep.shape)[pos].mean()
    assert abs(observed - expected) < 0.01, (observed, expected)
    assert expected < (0.8 if nb else 0.97)
