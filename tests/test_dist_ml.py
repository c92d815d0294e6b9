"""Distributional models by Laplace maximum likelihood (bayesmix.dist.ml, stan/dist_ml.stan)
against glmmTMB 1.1.5 and ordinal::clmm (tests/reference/families/family_fits.json).

References and tolerances:
* derivatives of the per-row log density in every linear predictor (the Newton iterations
  and the Laplace curvature): against central differences of bayesmix.families' log
  densities (themselves checked against scipy.stats in test_family_refs.py), 1e-6 relative;
* the numpy Laplace approximation at the packages' own estimates: against their logLik,
  1e-6 (glmmTMB: the same approximation; clmm differs by up to 5.8e-6, README);
* the fits (one compile of dist_ml.stan for all 13 cases): logLik within 1e-3 (issue #17's
  bar), fixed effects of every sub-model, cutpoints, SDs and constant parameters within 1e-3
  relative or 1e-4 absolute, whichever is larger (estimates near zero, e.g. a correlation of
  0.056, carry the optimizers' absolute error ~1e-5, not a relative one); conditional modes
  within 2e-3 absolute; standard errors (fixed effects, cutpoints, log SDs, student's
  log nu) within 0.1%: both come from the Hessian of the same Laplace log likelihood
  (glmmTMB by automatic differentiation, ours by central differences of Stan's gradient
  in the bundled driver, step 1e-5); measured
  gaps are below 1e-5 relative (estimates below 1.5e-5, logLik below 6e-6: clmm's own
  curvature), so 0.1% leaves room for the optima's last digits on other platforms.
* other families, links and random effects in several predictors (no external reference):
  Stan's Laplace log likelihood at its optimum equals the numpy mirror's (1e-6; the mirror's
  derivatives are the checked ones, and Stan's enter the value through the mode and log|H|),
  and the gradient there vanishes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmix import bf
from bayesmix.design.dist import build_dist_design
from bayesmix.dist import ml
from bayesmix.dist.laplace import DistProblem, eta_derivs, laplace, log_lik
from bayesmix.errors import BayesmixError
from bayesmix.families import get_family

REF_DIR = Path(__file__).parent / "reference" / "families"
REF = json.loads((REF_DIR / "family_fits.json").read_text())["cases"]
ROOT = Path(__file__).parents[1]


def _design(name: str):
    case = REF[name]
    data = pd.read_csv(ROOT / case["data"])
    formulas = dict(case["formula"])
    main = formulas.pop("formula")
    family = get_family(case["family"], case["link"], fittable=False)
    return build_dist_design(bf(main, **formulas), data, family)


# ---------------------------------------------------------------- derivatives

_RNG = np.random.default_rng(20261202)
_N = 40
_DERIV_CASES = {
    "gaussian": (("identity", "log"), lambda: _RNG.normal(0, 1, _N)),
    "student": (("identity", "log", "logm1"), lambda: _RNG.standard_t(3, _N)),
    "lognormal": (("identity", "log"), lambda: np.exp(_RNG.normal(0, 1, _N))),
    "beta": (("logit", "log"), lambda: _RNG.beta(2, 3, _N)),
    "beta_binomial": (("probit", "log"), lambda: _RNG.integers(0, 11, _N).astype(float)),
    "negbinomial": (("log", "log"), lambda: _RNG.poisson(3, _N).astype(float)),
    "Gamma": (("log", "log"), lambda: _RNG.gamma(2, 1, _N)),
    "zero_inflated_poisson": (("log", "logit"), lambda: _RNG.poisson(1.5, _N).astype(float)),
    "zero_inflated_negbinomial": (("sqrt", "log", "logit"),
                                  lambda: _RNG.poisson(1.5, _N).astype(float)),
    "hurdle_poisson": (("log", "logit"), lambda: _RNG.poisson(1.5, _N).astype(float)),
    "hurdle_negbinomial": (("log", "log", "logit"),
                           lambda: _RNG.poisson(1.5, _N).astype(float)),
}


def _family_lp(fam, links, y, trials, eta, cut=None):
    """sum-free per-row log density from bayesmix.families at linear predictors eta."""
    from bayesmix.dist.laplace import link_parts
    if fam.name == "cumulative":
        return fam.log_density(y, eta[:, 0], cutpoints=cut)
    par = np.column_stack([link_parts(lk, eta[:, d])[0] for d, lk in enumerate(links)])
    return log_lik(fam, y, trials, par)


@pytest.mark.parametrize("name", sorted(_DERIV_CASES))
def test_derivatives_match_finite_differences(name):
    links, gen = _DERIV_CASES[name]
    fam = get_family(name, fittable=False)
    y, trials = gen(), np.full(_N, 10.0)
    D = len(links)
    eta = _RNG.normal(0, 0.5, (_N, D))
    if links[0] == "sqrt":
        eta[:, 0] = np.abs(eta[:, 0]) + 0.5
    lp, g, h = eta_derivs(fam, links, y, trials, eta)
    np.testing.assert_allclose(lp, _family_lp(fam, links, y, trials, eta), rtol=1e-12,
                               atol=1e-12)
    e = 1e-5
    for a in range(D):
        E = np.zeros(D)
        E[a] = e
        fd = (_family_lp(fam, links, y, trials, eta + E)
              - _family_lp(fam, links, y, trials, eta - E)) / (2 * e)
        np.testing.assert_allclose(g[:, a], fd, rtol=1e-6, atol=1e-7)
        # second derivatives: second differences of the families' density
        for b in range(D):
            F = np.zeros(D)
            F[b] = e * 10
            E2 = E * 10
            fd2 = (_family_lp(fam, links, y, trials, eta + E2 + F)
                   - _family_lp(fam, links, y, trials, eta + E2 - F)
                   - _family_lp(fam, links, y, trials, eta - E2 + F)
                   + _family_lp(fam, links, y, trials, eta - E2 - F)) / (4 * 1e-8)
            np.testing.assert_allclose(h[:, a, b], fd2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_cumulative_derivatives(link):
    fam = get_family("cumulative", link, fittable=False)
    y = _RNG.integers(1, 6, _N).astype(float)
    cut = np.array([-1.5, -0.3, 0.4, 1.8])
    eta = _RNG.normal(0, 2, (_N, 1))
    eta[0, 0], eta[1, 0] = 9.0, -9.0          # far tails: ratios from logs
    lp, g, h = eta_derivs(fam, (link,), y, None, eta, cut)
    np.testing.assert_allclose(lp, fam.log_density(y, eta[:, 0], cutpoints=cut), rtol=1e-12)
    e = 1e-5
    f = [fam.log_density(y, eta[:, 0] + s, cutpoints=cut) for s in (e, -e, 1e-3, 0, -1e-3)]
    np.testing.assert_allclose(g[:, 0], (f[0] - f[1]) / (2 * e), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h[:, 0, 0], (f[2] - 2 * f[3] + f[4]) / 1e-6, rtol=1e-4,
                               atol=1e-6)


# ---------------------------------------------------------------- the approximation


def _reference_x(name: str, prob: DistProblem) -> np.ndarray:
    """The package's estimates in our parametrisation [beta, cutpoints, theta]."""
    case = REF[name]
    fe = case["fixef"]
    beta = [np.asarray(fe[p.dpar]["estimate"], float) if p.dpar in fe
            else np.array([np.log(case["aux"][p.dpar]["value"])]) for p in
            prob.design.predictors]
    cut = np.asarray(fe["cutpoints"]["estimate"]) if "cutpoints" in fe else np.zeros(0)
    theta = []
    for t, d in zip(prob.terms, prob.term_lp):
        vc = case["varcorr"][prob.design.predictors[d].dpar][t.group]
        sd = np.asarray(vc["sd"], float)
        cor = np.asarray(vc.get("cor", [[1.0]]), float).reshape(len(sd), len(sd))
        T = np.linalg.cholesky(cor * np.outer(sd, sd))
        theta.append(np.concatenate([T[j:, j] for j in range(t.p)]))
    return np.concatenate(beta + [cut] + theta)


def _student_nu_fix(name, prob, x):
    # student's nu: glmmTMB's constant psi = log(nu); ours log(nu - 1) (brms's logm1)
    if name == "student":
        nu = REF[name]["aux"]["nu"]["value"]
        x[prob.k_beta - 1] = np.log(nu - 1.0)
    return x


@pytest.mark.parametrize("name", sorted(REF))
def test_numpy_laplace_at_reference_estimates(name):
    prob = DistProblem.from_design(_design(name))
    x = _student_nu_fix(name, prob, _reference_x(name, prob))
    tol = 1e-5 if REF[name]["package"].startswith("ordinal") else 1e-6
    assert laplace(prob, x).loglik == pytest.approx(REF[name]["logLik"], abs=tol)


# ---------------------------------------------------------------- hostile input


def test_hostile_input_errors_before_compiling(monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("compiled")
    monkeypatch.setattr(ml, "compile_model", no_compile)
    design = _design("zero_inflated_poisson")
    with pytest.raises(BayesmixError, match="DistDesign"):
        ml.fit_dist_ml("y ~ x")
    with pytest.raises(BayesmixError, match="inits need"):
        ml.fit_dist_ml(design, inits={"beta": [0.0]})
    with pytest.raises(BayesmixError, match="finite"):
        ml.fit_dist_ml(design, inits={"beta": [0.0, np.nan, 0.0], "theta": [1.0]})
    cum = _design("cumulative_logit")
    with pytest.raises(BayesmixError, match="increasing"):
        ml.fit_dist_ml(cum, inits={"beta": [0.0], "theta": [1.0],
                                   "cutpoints": [0.0, -1.0, 1.0, 2.0]})
    with pytest.raises(BayesmixError, match="cannot start"):
        # identity-link Poisson mean below zero for some rows
        bad = build_dist_design("y ~ x + (1 | g)", pd.read_csv(ROOT / REF["hurdle_poisson"]["data"]),
                                get_family("hurdle_poisson", "identity", fittable=False))
        ml.fit_dist_ml(bad, inits={"beta": [-5.0, 0.0, 0.0], "theta": [1.0]})


# ---------------------------------------------------------------- the fits


@pytest.fixture(scope="module")
def fits():
    return {name: ml.fit_dist_ml(_design(name), engine="bundled") for name in REF}


SE_RTOL = 1e-3  # measured: at most 8e-6 (module docstring)


def _close(ours, ref, what):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    tol = np.maximum(1e-3 * np.abs(ref), 1e-4)
    assert np.all(np.abs(ours - ref) <= tol), f"{what}: {ours} vs {ref}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REF))
def test_fit_matches_reference(fits, name):
    fit, case = fits[name], REF[name]
    assert fit.converged and fit.max_grad < 1e-2
    assert fit.loglik() == pytest.approx(case["logLik"], abs=1e-3)
    assert fit.objective_stan == pytest.approx(fit.loglik(), abs=1e-6)  # lp__ is logLik
    assert fit.df() == case["df"]
    for dpar, fe in case["fixef"].items():
        if dpar == "cutpoints":
            cut = fit.cutpoints()
            _close(cut, fe["estimate"], f"{name} cutpoints")
            se = fit.coef_tables()["Threshold coefficients"]["Std. Error"]
        else:
            assert list(fit.fixef(dpar).index) == fe["names"]
            _close(fit.fixef(dpar), fe["estimate"], f"{name} {dpar}")
            se = fit.coef_table(dpar)["Std. Error"]
        np.testing.assert_allclose(se, fe["se"], rtol=SE_RTOL, err_msg=f"{name} {dpar} SE")
    vc = fit.varcorr()
    raw = case.get("raw", {})
    for dpar, groups in case["varcorr"].items():
        for grp, v in groups.items():
            ours = vc[dpar][grp]
            _close(ours["sd"], v["sd"], f"{name} {dpar} sd")
            if "cor" in v:
                _close(ours["cor"].to_numpy(), v["cor"], f"{name} {dpar} cor")
            # SE of log(SD): glmmTMB's theta (log SDs first) and clmm's "sd_se" (which is
            # clmm's SE of log SD: its ST parameter), ours by the delta method
            se_log = (ours["sd_se"] / ours["sd"]).to_numpy()
            if "sd_se" in v:
                ref_se = v["sd_se"]
            else:
                key = "theta" if dpar == "mu" else "thetazi"
                ref_se = [se for nm, se in zip(raw["names"], raw["se"]) if nm == key][:len(se_log)]
            np.testing.assert_allclose(se_log, ref_se, rtol=SE_RTOL, err_msg=f"{name} sd SE")
    aux = fit.aux()
    for k, v in case["aux"].items():
        _close(aux[k], v["value"], f"{name} {k}")
    if name == "student":  # glmmTMB's psi = log(nu) and its SE (delta method from ours)
        nu = aux["nu"]
        se_eta = fit.coef_table("nu")["Std. Error"].iloc[0]
        assert np.log(nu) == pytest.approx(case["aux"]["nu"]["log_estimate"], abs=1e-3)
        assert se_eta * (nu - 1) / nu == pytest.approx(case["aux"]["nu"]["log_se"], rel=SE_RTOL)
    # conditional modes (glmmTMB's / clmm's ranef), to the estimates' precision
    for dpar, groups in case.get("ranef", {}).items():
        for grp, r in groups.items():
            ours = fit.ranef()[dpar][grp]
            assert list(ours.index) == r["levels"]
            np.testing.assert_allclose(ours.to_numpy(), np.asarray(r["values"]), atol=2e-3)


@pytest.mark.slow
def test_result_accessors(fits):
    fit = fits["zero_inflated_poisson_zi_re"]
    text = str(fit.summary())
    for part in ("Conditional model", "Zero-inflation model", "logLik", "(Intercept)"):
        assert part in text
    assert "DistMLFit" in repr(fit) and "<pre" in fit._repr_html_()
    assert set(fit.ranef()) == {"mu", "zi"}
    assert fit.aic() == pytest.approx(-2 * fit.loglik() + 2 * fit.df())
    assert fit.bic() == pytest.approx(-2 * fit.loglik() + np.log(800) * fit.df())
    assert fit.nobs() == 800 and fit.timings["total"] > 0
    cum = fits["cumulative_logit"]
    assert list(cum.cutpoints().index) == ["1|2", "2|3", "3|4", "4|5"]
    assert "Threshold coefficients" in str(cum.summary())
    p = fit.params()
    assert p.beta["mu"].shape == (1, 2) and p.ranef[0].shape == (1, 40, 1)
    assert p.cutpoints is None and cum.params().cutpoints.shape == (1, 4)
    # bayesmix.dist.predict's pointwise log density at the estimates and modes (another
    # implementation) sums to the Laplace approximation's conditional log likelihood
    for f in (fit, cum, fits["student"], fits["beta"]):
        assert f.log_lik().sum() == pytest.approx(f.laplace.cond_loglik, abs=1e-8)
    # expected counts of the zero-inflated model: (1 - zi) mu at the modes
    nat = fit.dpars_natural()
    np.testing.assert_allclose(fit.epred(), (1 - nat["zi"]) * nat["mu"], rtol=1e-12)
    assert fit.simulate(2, seed=1).shape == (2, 800)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero_inflated_poisson_zi_re", "beta"])
def test_coef_is_glmmtmb_fixef_plus_ranef(fits, name):
    """coef() against glmmTMB's coef() built from the reference's own fixef and conditional
    modes (fixef + ranef per level), to the estimates' precision (2e-3, as the modes)."""
    case = REF[name]
    coefs = fits[name].coef()
    for dpar, groups in case["ranef"].items():
        fe = dict(zip(case["fixef"][dpar]["names"], case["fixef"][dpar]["estimate"]))
        for grp, r in groups.items():
            ours = coefs[dpar][grp]
            assert list(ours.index) == r["levels"]
            assert list(ours.columns) == case["fixef"][dpar]["names"]
            modes = pd.DataFrame(np.asarray(r["values"]), index=r["levels"], columns=r["names"])
            for col in ours.columns:
                ref = fe[col] + (modes[col].to_numpy() if col in modes else 0.0)
                np.testing.assert_allclose(ours[col].to_numpy(), ref, atol=2e-3,
                                           err_msg=f"{name} {dpar} {grp} {col}")


# ---------------------------------------------------------------- other families and links


def _simulate(family, link, pars, n=300, groups=15, seed=3):
    """Data drawn by bayesmix.families from natural parameters pars(x, b, b2) (two
    independent group effects, SD 0.5)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    x = rng.normal(size=n)
    b, b2 = rng.normal(0, 0.5, groups)[g], rng.normal(0, 0.5, groups)[g]
    fam = get_family(family, link, fittable=False)
    values = {k: np.broadcast_to(f(x, b, b2), (n,)) for k, f in pars.items()}
    mu = values.pop("mu")
    if fam.name in ("negbinomial", "Gamma"):
        y = fam.draw(rng, mu, phi=values["shape"])
    else:
        y = fam.draw(rng, mu, 1.0, **values)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{j:02d}" for j in g]}), fam


_EXP, _EXPIT = np.exp, (lambda v: 1 / (1 + np.exp(-v)))
_MIRROR_CASES = {
    "Gamma_log": ("Gamma", "log", {"mu": lambda x, b, b2: _EXP(0.5 + 0.3 * x + b),
                                   "shape": lambda x, b, b2: 3.0}, {}),
    "negbinomial": ("negbinomial", "log", {"mu": lambda x, b, b2: _EXP(1 + 0.3 * x + b),
                                           "shape": lambda x, b, b2: 2.0}, {}),
    "student_sigma_re": ("student", "identity",
                         {"mu": lambda x, b, b2: 1 + 0.5 * x + b,
                          "sigma": lambda x, b, b2: _EXP(-0.3 + b2), "nu": lambda x, b, b2: 5.0},
                         {"sigma": "~ 1 + (1 | g)"}),
    "zinb_zi_re": ("zero_inflated_negbinomial", "log",
                   {"mu": lambda x, b, b2: _EXP(1 + 0.3 * x + b),
                    "shape": lambda x, b, b2: _EXP(0.5 + 0.3 * x),
                    "zi": lambda x, b, b2: _EXPIT(-1 + b2)},
                   {"zi": "~ 1 + (1 | g)", "shape": "~ x"}),
    "beta_probit": ("beta", "probit",
                    {"mu": lambda x, b, b2: _EXPIT(0.2 + 0.4 * x + b),
                     "phi": lambda x, b, b2: _EXP(2 + 0.3 * x)}, {"phi": "~ x"}),
    "hurdle_nb_hu_re": ("hurdle_negbinomial", "log",
                        {"mu": lambda x, b, b2: _EXP(1 + 0.3 * x + b),
                         "shape": lambda x, b, b2: 2.0, "hu": lambda x, b, b2: _EXPIT(-0.5 + b2)},
                        {"hu": "~ 1 + (1 | g)"}),
    "student_nu": ("student", "identity",  # nu = 1 + exp(eta): brms's and our logm1 link
                   {"mu": lambda x, b, b2: 1 + 0.5 * x + b, "sigma": lambda x, b, b2: 0.8,
                    "nu": lambda x, b, b2: 1 + _EXP(1.0 + 0.5 * x)}, {"nu": "~ x"}),
    "lognormal_sigma_re": ("lognormal", "identity",
                           {"mu": lambda x, b, b2: 0.5 + 0.3 * x + b,
                            "sigma": lambda x, b, b2: _EXP(-0.5 + b2)}, {"sigma": "~ 1 + (1 | g)"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_MIRROR_CASES))
def test_stan_matches_numpy_mirror(name):
    family, link, pars, extra = _MIRROR_CASES[name]
    data, fam = _simulate(family, link, pars)
    fit = ml.fit_dist_ml(build_dist_design(bf("y ~ x + (1 | g)", **extra), data, fam),
                         engine="bundled")
    assert fit.converged and fit.max_grad < 1e-2
    assert fit.objective_stan == pytest.approx(fit.loglik(), abs=1e-6)
    assert np.all(np.isfinite(fit.se[:fit.problem.k_beta]))


@pytest.mark.slow
def test_nu_formula_recovers_the_simulation():
    """student's nu with a formula of its own (glmmTMB's t_family has none: no external ML
    reference): the estimates of nu's linear predictor, log(nu - 1) = 1 + 0.5 x, and of mu's
    lie within 3 standard errors of the simulated truth (measured: 0.06 and 0.18 SE for nu's)."""
    family, link, pars, extra = _MIRROR_CASES["student_nu"]
    data, fam = _simulate(family, link, pars)
    fit = ml.fit_dist_ml(build_dist_design(bf("y ~ x + (1 | g)", **extra), data, fam),
                         engine="bundled")
    for dpar, truth in (("nu", [1.0, 0.5]), ("mu", [1.0, 0.5])):
        table = fit.coef_table(dpar)
        z = (table["Estimate"].to_numpy() - truth) / table["Std. Error"].to_numpy()
        assert np.all(np.abs(z) < 3), f"{dpar}: z = {z}"


@pytest.mark.slow
def test_uncorrelated_term_is_two_variances():
    """(1 + x || g) has a diagonal factor: two SDs and no correlation parameter; its fit
    equals the model with two independent terms written out, (1 | g) + (0 + x | g)."""
    data, fam = _simulate("gaussian", "identity",
                          {"mu": lambda x, b, b2: 1 + 0.5 * x + b + b2 * x,
                           "sigma": lambda x, b, b2: 0.7})
    a = ml.fit_dist_ml(build_dist_design("y ~ x + (1 + x || g)", data, fam), engine="bundled")
    assert a.df() == 5 and a.objective_stan == pytest.approx(a.loglik(), abs=1e-6)
    b = ml.fit_dist_ml(build_dist_design("y ~ x + (1 | g) + (0 + x | g)", data, fam),
                       engine="bundled")
    assert a.loglik() == pytest.approx(b.loglik(), abs=1e-6)


@pytest.mark.slow
def test_model_fit_and_offset(fits):
    """Model(...).fit() reaches fit_dist_ml (the same optimum as the direct call); an offset
    of a constant c in mu's predictor shifts only mu's intercept, by -c."""
    import bayesmix
    case = REF["zero_inflated_poisson"]
    data = pd.read_csv(ROOT / case["data"])
    m = bayesmix.Model(bf("y ~ x + (1 | g)", zi="~ 1"), data, family="zero_inflated_poisson")
    fit = m.fit(engine="bundled")
    assert isinstance(fit, ml.DistMLFit)
    assert fit.loglik() == pytest.approx(fits["zero_inflated_poisson"].loglik(), abs=1e-8)
    data["c"] = 0.7
    off = ml.fit_dist_ml(build_dist_design(bf("y ~ x + offset(c) + (1 | g)", zi="~ 1"), data,
                                           get_family("zero_inflated_poisson",
                                                      fittable=False)), engine="bundled")
    assert off.loglik() == pytest.approx(fit.loglik(), abs=1e-6)
    base = fit.fixef().to_numpy()
    np.testing.assert_allclose(off.fixef().to_numpy(), base - [0.7, 0.0], atol=1e-4)
