"""Parametric bootstrap (bootMer), PBmodcomp and the executors that run them.

References: tests/reference/bootstrap_refs.R (lme4 bootMer, boot's norm.inter, pbkrtest's
PBmodcomp) -> bootstrap_refs.json. Bootstrap results depend on the random numbers, so only
norm.inter is compared exactly; bootstrap SDs and intervals are compared with Monte Carlo
tolerances (stated at each test)."""

import json
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.parboot import bootstrap, default_statistic, norm_inter, pb_modcomp
from bayesmix.datasets import load
from bayesmix.parallel import run_tasks, spawn_seeds, stan_seed
from bayesmix.refit import LmmRefitter

REFS = json.loads((Path(__file__).parent / "reference" / "bootstrap_refs.json").read_text())
SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return load("sleepstudy")


@pytest.fixture(scope="module")
def fit_reml(sleep):
    return bayesmix.lmer(SLEEP, sleep)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# ---------------------------------------------------------------- the fast refit


@pytest.mark.parametrize("formula,data,reml", [
    (SLEEP, "sleepstudy", False),
    (SLEEP, "sleepstudy", True),
    ("Reaction ~ Days + (1 | Subject)", "sleepstudy", False),
    ("Reaction ~ Days + (Days || Subject)", "sleepstudy", True),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", False),
    ("Reaction ~ Days + (1 + Days + I(Days^2) | Subject)", "sleepstudy", True),
])
def test_fast_refit_reaches_the_stan_optimum(formula, data, reml):
    """The numpy refit of the original response lands on Stan's optimum: logLik within 1e-6,
    fixed effects and sigma to 1e-5 relative (both optimise the same profiled criterion)."""
    fit = bayesmix.lmer(formula, load(data), REML=reml)
    r = LmmRefitter.from_fit(fit)
    rep = r.prepare(fit.design.y)
    assert r.deviance(fit.estimates.theta, rep)[0] == pytest.approx(-2 * fit.loglik(), abs=1e-8)
    ref = r.refit(fit.design.y, start=np.ones_like(r.theta0) * 0.5)  # not from the optimum
    assert ref.converged
    assert abs(ref.loglik() - fit.loglik()) < 1e-6
    np.testing.assert_allclose(ref.fixef().to_numpy(), fit.fixef().to_numpy(), rtol=1e-5)
    assert ref.sigma() == pytest.approx(fit.sigma(), rel=1e-5)
    # the full fit at the refit's optimum has lme4's accessors
    assert ref.full.varcorr()["sdcor"].to_numpy() == pytest.approx(
        fit.varcorr()["sdcor"].to_numpy(), rel=1e-3, abs=1e-3)


def test_fast_refit_matches_stan_refits_of_simulated_responses(fit_reml):
    """Refits of simulated responses: numpy and Stan agree (logLik 1e-6) replicate by
    replicate, including responses whose fits are near the boundary."""
    fast = bootstrap(fit_reml, 6, seed=11, executor="serial", statistic=lambda f: [f.loglik()])
    stan = bootstrap(fit_reml, 6, seed=11, executor="serial", refit="stan",
                     statistic=lambda f: [f.loglik()])
    np.testing.assert_allclose(fast.replicates.to_numpy(), stan.replicates.to_numpy(),
                               atol=1e-6, rtol=0)


def test_fast_refit_at_the_boundary_matches_stan(sleep):
    """Responses simulated from (1 | Subject) refitted with (Days | Subject): most refits are
    singular (theta's last element at its bound 0, where the fast refit hands over from
    Newton to L-BFGS-B); numpy and Stan agree to 1e-6 in logLik."""
    from bayesmix.parboot import _refitter
    m0 = bayesmix.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    m1 = bayesmix.lmer(SLEEP, sleep, REML=False)
    sim, fast, stan = LmmRefitter.from_fit(m0), _refitter(m1, "fast"), _refitter(m1, "stan")
    rng = np.random.default_rng(3)
    singular = 0
    for _ in range(6):
        y = sim.simulate(rng)
        a, b = fast.refit(y), stan.refit(y, seed=1)
        assert a.converged
        assert abs(a.loglik() - b.loglik()) < 1e-6
        singular += b.is_singular()
    assert singular >= 3


def test_simulation_follows_lme4s_simulate(fit_reml):
    """simulate_lmm (the bootstrap's simulation) and fit.simulate() both draw new random
    effects (lme4's use.u = FALSE): marginal mean X beta and variance diag(Z Sigma Z') +
    sigma^2 per row. 4000 draws: the SE of a variance is ~2.2%, tolerance 10%."""
    r = LmmRefitter.from_fit(fit_reml)
    rng = np.random.default_rng(5)
    ys = np.array([r.simulate(rng) for _ in range(4000)])
    ys2 = fit_reml.simulate(4000, seed=6)
    d = fit_reml.design
    cov = fit_reml.estimates.varcorr_cov[0]
    Z = d.terms[0].Z
    var = np.einsum("ij,jk,ik->i", Z, cov, Z) + fit_reml.sigma() ** 2
    mean = d.X @ fit_reml.estimates.beta
    for y in (ys, ys2):
        np.testing.assert_allclose(y.mean(0), mean, atol=4 * np.sqrt(var.max() / 4000))
        np.testing.assert_allclose(y.var(0), var, rtol=0.1)
    # the same subject's rows share their random effects: correlated like Z Sigma Z'
    i, j = 0, 9  # subject 308, days 0 and 9
    cov_ij = Z[i] @ cov @ Z[j]
    assert np.cov(ys[:, i], ys[:, j])[0, 1] == pytest.approx(cov_ij, rel=0.15)


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_table_on_every_executor(fit_reml, dask_client):
    """Bit-identical replicate tables: serial, a ProcessPoolExecutor(2), the default pool,
    a Dask LocalCluster (client and its executor), whatever the chunking."""
    ref = bootstrap(fit_reml, 40, seed=2024, executor="serial")
    with ProcessPoolExecutor(2) as pool:
        pooled = bootstrap(fit_reml, 40, seed=2024, executor=pool)
        chunked = bootstrap(fit_reml, 40, seed=2024, executor=pool, chunksize=3)
    default = bootstrap(fit_reml, 40, seed=2024)
    on_dask = bootstrap(fit_reml, 40, seed=2024, executor=dask_client)
    on_dask_ex = bootstrap(fit_reml, 40, seed=2024, executor=dask_client.get_executor())
    for other in (pooled, chunked, default, on_dask, on_dask_ex):
        pd.testing.assert_frame_equal(ref.replicates, other.replicates, check_exact=True)
    assert ref.n_failed == 0 and not ref.replicates.isna().any().any()
    # a different seed gives different replicates; replicate i only depends on child i
    other = bootstrap(fit_reml, 10, seed=2025, executor="serial")
    assert not np.allclose(other.replicates.to_numpy(), ref.replicates.to_numpy()[:10])
    first10 = bootstrap(fit_reml, 10, seed=2024, executor="serial")
    pd.testing.assert_frame_equal(first10.replicates, ref.replicates.iloc[:10],
                                  check_exact=True)


def test_user_statistic_travels_to_workers(fit_reml, dask_client):
    """A lambda (not picklable by pickle) reaches process and Dask workers via cloudpickle;
    the refit offers lme4's accessors (fixef, theta, sigma, ranef through the full fit)."""
    stat = lambda f: pd.Series({"slope": f.fixef()["Days"], "t1": f.theta.iloc[0],  # noqa: E731
                                "re308": f.ranef()["Subject"].iloc[0, 0]})
    a = bootstrap(fit_reml, 6, statistic=stat, seed=3, executor="serial")
    with ProcessPoolExecutor(2) as pool:
        b = bootstrap(fit_reml, 6, statistic=stat, seed=3, executor=pool)
    c = bootstrap(fit_reml, 6, statistic=stat, seed=3, executor=dask_client)
    assert list(a.replicates.columns) == ["slope", "t1", "re308"]
    assert list(a.t0.index) == ["slope", "t1", "re308"]
    pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)
    pd.testing.assert_frame_equal(a.replicates, c.replicates, check_exact=True)


def test_glmer_bootstrap_is_reproducible_through_stan():
    """glmer refits go through the Stan program with a Stan seed derived from each
    replicate's own SeedSequence: identical on serial and pooled execution."""
    g = bayesmix.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                       load("cbpp"), family="binomial")
    a = bootstrap(g, 4, seed=9, executor="serial")
    with ProcessPoolExecutor(2) as pool:
        b = bootstrap(g, 4, seed=9, executor=pool)
    pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)
    assert list(a.replicates.columns) == ["sd_(Intercept)|herd", "(Intercept)", "period2",
                                          "period3", "period4"]
    assert a.n_failed == 0


def test_seeds_are_spawned_children():
    kids = spawn_seeds(7, 5)
    again = np.random.SeedSequence(7).spawn(5)
    assert [k.spawn_key for k in kids] == [k.spawn_key for k in again]
    assert [stan_seed(k) for k in kids] == [stan_seed(k) for k in again]
    assert all(0 <= stan_seed(k) < 2 ** 31 for k in kids)


def _square(shared, item):
    return shared * item * item


def test_run_tasks_keeps_order_on_every_executor(dask_client):
    items = list(range(23))
    want = [3 * i * i for i in items]
    assert run_tasks(_square, 3, items, executor="serial") == want
    assert run_tasks(_square, 3, items, executor=2, chunksize=4) == want
    assert run_tasks(_square, 3, items, executor=dask_client) == want
    assert run_tasks(_square, 3, [], executor=2) == []


# ---------------------------------------------------------------- against lme4 / boot


def test_norm_inter_is_boots():
    ni = REFS["norm_inter"]
    for t, q in (("t1", "q1"), ("t2", "q2")):
        np.testing.assert_allclose(norm_inter(np.array(ni[t]), np.array(ni["alpha"])),
                                   ni[q], rtol=1e-12)


@pytest.fixture(scope="module")
def boot500(fit_reml):
    return bootstrap(fit_reml, 500, seed=1, executor="serial")


def test_bootstrap_sd_of_fixed_effects_matches_lme4_se(boot500):
    """The parametric bootstrap SD of the fixed effects estimates their sampling SD, which
    lme4's SEs (vcov) estimate too: with 500 replicates the SD has a Monte Carlo relative SE
    of 1/sqrt(2 * 499) = 3.2%, and for a gaussian LMM the two agree asymptotically; 15% is
    about 4.7 Monte Carlo SEs (the difference here is a few %)."""
    se = pd.Series(REFS["se"])
    sd = boot500.std_error()[se.index]
    np.testing.assert_allclose(sd.to_numpy(), se.to_numpy(), rtol=0.15)
    # the bootstrap mean of the fixed effects is (almost) unbiased: |bias| < 3 MC SEs
    bias = boot500.bias()[se.index]
    assert np.all(np.abs(bias) < 3 * sd / np.sqrt(500))


def test_percentile_intervals_named_and_close_to_bootmer(boot500):
    """confint(type="perc") has lme4's confint(method = "boot", oldNames = FALSE) rows and
    columns. Against lme4's bootMer (1000 replicates, other random numbers): each endpoint of
    a 95% percentile interval has a Monte Carlo SD of about 0.09 bootstrap SDs at 1000
    replicates (0.12 at 500); the difference of two independent runs ~0.15 SD, about 4% of
    the interval's width (3.9 SDs). Tolerance: 15% of lme4's width (~3.7 MC SDs)."""
    ci = boot500.confint()
    ref = REFS["confint_boot"]
    assert list(ci.index) == ref["names"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    width = np.array(ref["upper"]) - np.array(ref["lower"])
    np.testing.assert_array_less(np.abs(ci["2.5 %"].to_numpy() - ref["lower"]), 0.15 * width)
    np.testing.assert_array_less(np.abs(ci["97.5 %"].to_numpy() - ref["upper"]), 0.15 * width)
    # other levels and types: nested intervals around the estimate
    ci90 = boot500.confint(0.9)
    assert list(ci90.columns) == ["5 %", "95 %"]
    assert np.all(ci90["5 %"] >= ci["2.5 %"]) and np.all(ci90["95 %"] <= ci["97.5 %"])
    for kind in ("basic", "norm"):
        other = boot500.confint(type=kind)
        assert np.all(other.iloc[:, 0] < other.iloc[:, 1])


def test_default_statistic_of_the_original_fit(fit_reml, boot500):
    t0 = default_statistic(fit_reml)
    assert list(t0.index) == REFS["confint_boot"]["names"]
    vc = fit_reml.varcorr()
    assert t0["sd_(Intercept)|Subject"] == pytest.approx(vc["sdcor"].iloc[0])
    assert t0["cor_Days.(Intercept)|Subject"] == pytest.approx(vc["sdcor"].iloc[2])
    assert t0["sigma"] == pytest.approx(fit_reml.sigma())
    pd.testing.assert_series_equal(boot500.t0, t0)
    assert "500 replicates" in repr(boot500)


def test_default_names_follow_lme4_for_split_terms(sleep):
    """(Days || Subject): lme4 names the two SDs sd_(Intercept)|Subject and sd_Days|Subject
    (confint(fm, oldNames = FALSE))."""
    fit = bayesmix.lmer("Reaction ~ Days + (Days || Subject)", sleep)
    assert list(default_statistic(fit).index) == [
        "sd_(Intercept)|Subject", "sd_Days|Subject", "sigma", "(Intercept)", "Days"]
    res = bootstrap(fit, 3, seed=1, executor="serial")
    assert list(res.confint().index) == list(default_statistic(fit).index)


def test_failed_refits_are_counted(fit_reml):
    """A statistic that fails on some replicates: NaN rows, counted, messages kept (bootMer
    keeps going and reports the failures)."""
    def flaky(f):
        if f.fixef()["Days"] > 10.47:
            raise RuntimeError("no")
        return [f.sigma()]
    with pytest.warns(UserWarning, match="refits failed"):
        res = bootstrap(fit_reml, 20, statistic=flaky, seed=4, executor="serial")
    failed = res.replicates["t1"].isna()
    assert 0 < res.n_failed == failed.sum() < 20
    assert all("RuntimeError: no" in res.messages[i] for i in np.flatnonzero(failed))
    assert res.confint().notna().all().all()


# ---------------------------------------------------------------- PBmodcomp


def test_pbmodcomp_clearly_significant(sleep):
    """Days in sleepstudy: LRT 23.5 on 1 df; no simulated LRT* reaches it, so the PB p-value
    is its minimum 1 / (N + 1) (pbkrtest gives the same with N = 500)."""
    m1 = bayesmix.lmer(SLEEP, sleep)  # REML: anova refits by ML, as lme4 and pbkrtest do
    m0 = bayesmix.lmer("Reaction ~ 1 + (Days | Subject)", sleep)
    tab = bayesmix.anova(m0, m1, bootstrap=200, seed=1, executor="serial")
    pb = tab.bootstrap
    ref = REFS["pb_significant"]
    assert pb.stat == pytest.approx(ref["stat"], rel=1e-6)
    assert pb.df == ref["df"]
    assert pb.p_chisq == pytest.approx(ref["p_chisq"], rel=1e-4)
    assert pb.p_value == pytest.approx(1 / 201)
    assert ref["p_pb"] < 0.005  # pbkrtest: no extremes either (a few refits dropped)
    assert tab["Pr(PB)"].iloc[1] == pytest.approx(1 / 201)
    assert np.isnan(tab["Pr(PB)"].iloc[0])
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["stat"], rel=1e-6)
    assert "Parametric bootstrap" in str(tab)


def test_pbmodcomp_clearly_null(sleep):
    """A pure-noise covariate: LRT small, chi-square p large; the PB p-value estimates the
    same tail probability. With 300 replicates its Monte Carlo SE is at most 0.029, pbkrtest's
    (500) 0.022: both within 0.15 of the chi-square p (~4 SEs) and of each other."""
    ss = sleep.copy()
    ss["noise"] = ((np.arange(1, 181) * 37) % 101) / 101 - 0.5
    m1 = bayesmix.lmer(SLEEP, ss, REML=False)
    mn = bayesmix.lmer("Reaction ~ Days + noise + (Days | Subject)", ss, REML=False)
    pb = pb_modcomp(m1, mn, nsim=300, seed=5, executor="serial")
    ref = REFS["pb_null"]
    assert pb.stat == pytest.approx(ref["stat"], rel=1e-5, abs=1e-6)
    assert pb.p_chisq == pytest.approx(ref["p_chisq"], rel=1e-4)
    assert pb.p_chisq > 0.2
    assert abs(pb.p_value - pb.p_chisq) < 0.15
    assert abs(pb.p_value - ref["p_pb"]) < 0.15
    assert pb.n_used == 300 and pb.converged.mean() > 0.95
    # order of the arguments does not matter; REML fits are refused
    with pytest.raises(bayesmix.BayesmixError, match="maximum-likelihood"):
        pb_modcomp(bayesmix.lmer(SLEEP, ss), mn, nsim=2)


def test_bootstrap_argument_errors(fit_reml):
    with pytest.raises(bayesmix.BayesmixError, match="nsim"):
        bootstrap(fit_reml, 0)
    with pytest.raises(bayesmix.BayesmixError, match="refit"):
        bootstrap(fit_reml, 2, refit="magic")
    with pytest.raises(bayesmix.BayesmixError, match="lmer or glmer"):
        bootstrap(bayesmix.lm("Reaction ~ Days", load("sleepstudy")), 2)
    res = bootstrap(fit_reml, 3, seed=1, executor="serial")
    with pytest.raises(bayesmix.BayesmixError, match="interval type"):
        res.confint(type="bca")


# ---------------------------------------------------------------- lmList cells


def test_lmlist_cells_on_executors(dask_client):
    """lmlist(..., executor=) fits the cells on the same machinery; same table, same
    per-cell warnings and failures as the serial loop."""
    data = load("lmmdata")
    f = "extro ~ open + agree + social | school"
    serial = bayesmix.lmlist(f, data)
    with ProcessPoolExecutor(2) as pool:
        pooled = bayesmix.lmlist(f, data, executor=pool)
    on_dask = bayesmix.lmlist(f, data, executor=dask_client)
    for other in (pooled, on_dask):
        pd.testing.assert_frame_equal(serial.coef(), other.coef(), check_exact=True)
        assert other.labels == serial.labels


# ---------------------------------------------------------------- programs on Dask workers


def _compile_lmer_here():
    from bayesmix.engine import cache_root, compile_model
    from bayesmix.ml import lmer_code
    m = compile_model(lmer_code(), "lmer")
    return str(cache_root()), bool(m.built), str(m.exe)


def test_dask_workers_reuse_shipped_programs(dask_client, fit_reml, tmp_path):
    """Workers pointed at an empty cache folder get the compiled lmer program from here
    (ship_programs) and run it without compiling; refit="stan" replicates on Dask equal
    the serial ones."""
    from bayesmix.engine import compile_model
    from bayesmix.ml import lmer_code
    from bayesmix.parallel import ship_programs, use_cache
    model = compile_model(lmer_code(), "lmer")
    try:
        roots = use_cache(dask_client, str(tmp_path))
        assert set(roots.values()) == {str(tmp_path)}
        written = ship_programs(dask_client, models=[model])
        assert sum(written.values()) >= 3  # the workers share tmp_path: one writes
        for root, built, exe in dask_client.run(_compile_lmer_here).values():
            assert root == str(tmp_path) and not built and exe.startswith(str(tmp_path))
        a = bootstrap(fit_reml, 4, seed=8, refit="stan", executor="serial")
        b = bootstrap(fit_reml, 4, seed=8, refit="stan", executor=dask_client)
        pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)
    finally:
        use_cache(dask_client, None)
