"""The generic joint program (stan/glmm_joint.stan, bayesmix.bayes.generic): one compiled
program for every joint model. At identical parameter values its log density (lp__) and
pointwise log-likelihood equal the generated per-formula program's; its posterior agrees;
a new formula structure costs no compile; user priors, export and reload work through it."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix.bayes import generic_programs
from bayesmix.bayes.generic import (GENERIC_NAME, Fallback, GenericPosteriorFit,
                                    choose_joint_program, cholesky_corr_free, generic_code,
                                    generic_inits, generic_stan_data)
from bayesmix.bayes.marginal import cholesky_corr
from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.engine import bundled_toolchain, compile_model
from bayesmix.errors import BayesmixError
from bayesmix.families import get_family
from bayesmix.priors import default_scales, prior
from bayesmix.stancode import joint_program, joint_stan_data, structure_of

SLEEP = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _quiet_sample(model, **kw):
    kw = {"chains": 4, "iter_warmup": 500, "iter_sampling": 500, "seed": 1,
          "show_progress": False, "engine": "bundled", **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(**kw)


def _grouped(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "w": rng.uniform(0.5, 2.0, n),
                         "t": rng.uniform(1.0, 3.0, n),
                         "g": rng.integers(0, 12, n).astype(str),
                         "h": rng.integers(0, 9, n).astype(str)})


def _design(case: str):
    if case == "gaussian":
        return build_design(SLEEP, load("sleepstudy")), (), False
    if case == "binomial":
        return build_design(CBPP, load("cbpp"), family=get_family("binomial")), (), False
    rng = np.random.default_rng(5)
    df = _grouped(5)
    if case == "poisson":   # crossed terms, correlated slopes, an offset
        df["y"] = rng.poisson(np.exp(0.3 + 0.5 * df.x + np.log(df.t)))
        return (build_design("y ~ x + (x | g) + (1 | h) + offset(log(t))", df,
                             family=get_family("poisson")), (), False)
    if case == "negbinomial":
        df["y"] = rng.negative_binomial(3.0, 3.0 / (3.0 + np.exp(1 + 0.4 * df.x)))
        return build_design("y ~ x + (1 | g)", df, family=get_family("negbinomial")), (), False
    if case == "Gamma":     # centred correlated term, weights, user priors of several kinds
        df["y"] = rng.gamma(4.0, np.exp(0.5 + 0.3 * df.x) / 4.0)
        priors = (prior("exponential(1)", cls="sd"), prior("lkj(2)", cls="cor"),
                  prior("normal(0, 1)", cls="b"), prior("lognormal(1, 0.5)", cls="shape"),
                  prior("cauchy(0, 2)", cls="sd", group="h"),
                  prior("student_t(4, 0, 3)", cls="Intercept"))
        return (build_design("y ~ x + (x | g) + (1 | h)", df, family=get_family("Gamma", "log"),
                             weights="w"), priors, ["g"])
    raise ValueError(case)


def _random_point(design, centered, rng) -> dict:
    """Parameter values in the generated program's names."""
    s = structure_of(design, centered)
    scales = default_scales(design)
    kb = design.X.shape[1] - int(s.intercept)
    v: dict = {"b": rng.normal(0, 0.3, kb)}
    if s.intercept:
        v["Intercept"] = scales.intercept_loc + 0.1 * rng.normal()
    unit = scales.sd_scale if design.family.name == "gaussian" else 1.0
    for k, (t, sh) in enumerate(zip(design.terms, s.terms), 1):
        v[f"sd_{k}"] = rng.uniform(0.1, 0.5, t.p) * unit
        if sh.centered:
            v[f"r_{k}"] = rng.normal(0, 0.3, (t.n_levels, t.p))
        else:
            v[f"z_{k}"] = rng.normal(size=(t.p, t.n_levels))
        if sh.correlated:
            v[f"L_{k}"] = cholesky_corr(rng.normal(0, 0.7, t.p * (t.p - 1) // 2), t.p)
    if s.family_param:
        v[s.family_param] = (0.5 * scales.sigma_scale if s.family_param == "sigma"
                             else rng.uniform(1.0, 5.0))
    return v


def _at_point(code: str, name: str, data: dict, inits: dict) -> tuple[float, np.ndarray]:
    """lp__ and log_lik at exactly `inits`: one NUTS transition from there with a step
    size so large (> 1e7, no step-size search) that the first leapfrog step diverges and
    the draw is the starting point, written with 18 significant digits."""
    model = compile_model(code, name, "bundled")
    run = model.sample(data, chains=1, iter_warmup=0, iter_sampling=1, seed=1,
                       max_treedepth=1, step_size=1e8, inits=inits, sig_figs=18)
    df = pd.read_csv(run.csv_files[0], comment="#")
    assert int(df["divergent__"].iloc[0]) == 1  # the draw did not move
    return float(df["lp__"].iloc[0]), df.filter(regex=r"^log_lik\.").iloc[0].to_numpy(float)


def _scipy_log_lik(design, point: dict, centered) -> np.ndarray:
    """The pointwise (weighted) log-likelihood at a point, in numpy and scipy.stats: the
    linear predictor from centred X (Intercept at the mean of X), the group-level effects
    r_k = (diag(sd_k) L_k z_k)' and the offset; densities in scipy's parametrisations
    (negative binomial: size phi, p = phi / (phi + mu); Gamma: shape, scale = mu / shape)."""
    s = structure_of(design, centered)
    X = np.asarray(design.X, float)
    eta = np.zeros(design.n)
    if s.intercept:
        Xs = X[:, 1:]
        eta += point["Intercept"] + (Xs - Xs.mean(axis=0)) @ point["b"]
    else:
        eta += X @ point["b"]
    for k, (t, sh) in enumerate(zip(design.terms, s.terms), 1):
        if sh.centered:
            r = point[f"r_{k}"]
        else:
            L = point[f"L_{k}"] if sh.correlated else np.eye(t.p)
            r = (np.diag(point[f"sd_{k}"]) @ L @ point[f"z_{k}"]).T
        eta += np.einsum("ip,ip->i", np.asarray(t.Z, float), r[t.index])
    if design.offset is not None:
        eta += design.offset
    fam, y = design.family, np.asarray(design.y, float)
    mu = {"identity": eta, "log": np.exp(eta), "logit": 1 / (1 + np.exp(-eta)),
          "inverse": 1 / eta}[fam.link]
    if fam.name == "gaussian":
        ll = stats.norm.logpdf(y, mu, point["sigma"])
    elif fam.name == "binomial":
        ll = stats.binom.logpmf(y, np.asarray(design.trials, float), mu)
    elif fam.name == "poisson":
        ll = stats.poisson.logpmf(y, mu)
    elif fam.name == "negbinomial":
        ll = stats.nbinom.logpmf(y, point["phi"], point["phi"] / (point["phi"] + mu))
    else:
        ll = stats.gamma.logpdf(y, point["shape"], scale=mu / point["shape"])
    return ll if design.weights is None else np.asarray(design.weights, float) * ll


@pytest.mark.parametrize("case", ["gaussian", "binomial", "poisson", "negbinomial", "Gamma"])
def test_same_log_density_as_the_generated_program(case):
    design, priors, centered = _design(case)
    gen = joint_program(design, priors, centered)
    gen_data = joint_stan_data(design, priors)
    data = generic_stan_data(design, priors, centered=centered)
    rng = np.random.default_rng(42)
    for _ in range(2):
        point = _random_point(design, centered, rng)
        lp_gen, ll_gen = _at_point(gen.code, gen.name, gen_data, point)
        lp, ll = _at_point(generic_code(), GENERIC_NAME, data,
                           generic_inits(design, point, centered))
        assert np.all(np.isfinite(ll)) and ll.shape == (design.n,)
        # log_lik against scipy.stats at the same point (printed with 18 significant digits)
        np.testing.assert_allclose(ll, _scipy_log_lik(design, point, centered),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ll, ll_gen, rtol=1e-10, atol=1e-8)
        assert lp == pytest.approx(lp_gen, rel=1e-10, abs=1e-8), (lp, lp_gen)


def test_cholesky_corr_free_inverts_the_transform():
    rng = np.random.default_rng(3)
    for p in (2, 3, 5):
        y = rng.normal(size=p * (p - 1) // 2)
        np.testing.assert_allclose(cholesky_corr_free(cholesky_corr(y, p)), y, atol=1e-12)


def test_program_choice_and_fallback_codes():
    design, priors, _ = _design("binomial")
    assert choose_joint_program(design) == ("generic", None)
    assert choose_joint_program(design, program="generic") == ("generic", None)
    which, why = choose_joint_program(design, program="generated")
    assert which == "generated" and why == Fallback("forced", "program='generated'")
    with pytest.raises(BayesmixError, match="unknown joint program"):
        choose_joint_program(design, program="fast")
    progs = generic_programs()
    assert set(progs) == {"lmer", "glmer", "lmm_marginal", GENERIC_NAME, "dist_ml", "dist_nuts"}
    assert progs[GENERIC_NAME] == generic_code()
    # stan_code("joint") stays the readable generated program
    model = bayesmix.Model(CBPP, load("cbpp"), family="binomial")
    assert "binomial_logit_lpmf(Y | trials, mu)" in model.stan_code("joint")


def test_new_structure_costs_no_compile(monkeypatch):
    compile_model(generic_code(), GENERIC_NAME, "bundled")  # the one build (cached)
    models = bundled_toolchain().home / "models"
    before = sorted(p.name for p in models.iterdir())
    compile_model.cache_clear()
    from bayesmix.engine import BundledModel
    for attr in ("_build", "_check_syntax"):
        if hasattr(BundledModel, attr):
            monkeypatch.setattr(BundledModel, attr, lambda *a, **k: pytest.fail("compiled"))
    df = _grouped(11)
    rng = np.random.default_rng(11)
    df["y"] = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + 0.5 * df.x))))
    # a structure no other test uses: probit bernoulli, no intercept, two terms, one ||
    model = bayesmix.Model("y ~ 0 + x + (1 | g) + (x || h)", df, family="bernoulli",
                           link="probit", engine="bundled")
    post = _quiet_sample(model, chains=1, iter_warmup=100, iter_sampling=100)
    assert isinstance(post, GenericPosteriorFit) and post.program_kind == "generic"
    assert not compile_model(generic_code(), GENERIC_NAME, "bundled").built
    assert sorted(p.name for p in models.iterdir()) == before
    assert set(post.ranef()) == {"g", "h"} and list(post.ranef()["h"].columns) == [
        "(Intercept)", "x"]


def test_user_prior_pins_the_coefficient():
    model = bayesmix.Model(SLEEP, load("sleepstudy"), engine="bundled",
                           priors=[bayesmix.prior("normal(5, 0.001)", cls="b", coef="Days")])
    post = _quiet_sample(model, program="joint", chains=2, iter_warmup=400, iter_sampling=400,
                         seed=3)
    assert post.program_kind == "generic" and post.stan_code == generic_code()
    assert post.stan_data["prior_dist"][1] == 1 and post.stan_data["prior_args"][1][:2] == [
        5.0, 0.001]
    days = post.fixef().loc["Days"]
    assert days["Estimate"] == pytest.approx(5, abs=0.003) and days["Est.Error"] < 0.002


def _agree(a, b, names):
    """Posterior means equal within Monte Carlo error (4.5 combined MCSEs)."""
    import arviz as az
    for name in names:
        x, y = (f.named_draws().posterior[name] for f in (a, b))
        x, y = (v.reshape(v.shape[:2] + (-1,)) for v in (x, y))
        for j in range(x.shape[-1]):
            se = np.hypot(float(az.mcse(x[..., j])), float(az.mcse(y[..., j])))
            diff = x[..., j].mean() - y[..., j].mean()
            assert abs(diff) < 4.5 * se, (name, j, diff, se)


def test_cbpp_posterior_agrees_with_the_generated_program(tmp_path):
    model = bayesmix.Model(CBPP, load("cbpp"), family="binomial", engine="bundled")
    gen = _quiet_sample(model, program="generated", seed=2)
    post = _quiet_sample(model, seed=3)
    assert gen.program_kind == "generated" and post.program_kind == "generic"
    _agree(post, gen, ["b", "sd_herd"])
    # the results objects work unchanged
    assert list(post.fixef().index) == list(gen.fixef().index)
    assert post.ranef()["herd"].shape == gen.ranef()["herd"].shape
    idata = post.to_arviz()
    assert idata.log_likelihood["incidence"].shape == (4, 500, 56)
    assert idata.posterior_predictive["incidence"].dtype.kind == "i"
    assert set(idata.posterior.data_vars) == set(gen.to_arviz().posterior.data_vars)
    # export writes the program that ran and its data; load and rerun give the same draws
    path = tmp_path / "bundle"
    post.export(path)
    assert (path / "model.stan").read_text() == generic_code()
    assert json.loads((path / "data.json").read_text())["family"] == 2
    assert json.loads((path / "run.json").read_text())["fit"]["program"] == "generic"
    loaded = bayesmix.load(path)
    assert isinstance(loaded, GenericPosteriorFit)
    assert str(loaded.summary()) == str(post.summary())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = bayesmix.rerun(path)
    np.testing.assert_array_equal(again.run.fit().draws(), post.run.fit().draws())
