"""bayesmix.dist.predict: parameters of a distributional model -> predictions.

References (independent of bayesmix): tests/reference/families/family_fits.json (glmmTMB 1.1.5
and ordinal::clmm fits in brms's parametrisation; see its README): per case the fixed effects
of every sub-model, the conditional modes of the group-level effects, and per_row (5 rows) the
linear predictor, mu, every parameter and the log density at those values; ``check`` holds
TMB's own joint log density (all rows + log N(b | 0, Sigma)). Numbers in the JSON carry 15
significant digits, so 1e-8 is loose for values of order 1-1000 (observed: <= 1e-13).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from bayesmix.design.dist import build_dist_design, dist_stan_data
from bayesmix.dist.predict import (DistParams, dpars, epred, epred_categories, linpred, log_lik,
                                   simulate, variance)
from bayesmix.errors import DataError, FormulaError
from bayesmix.families import DPAR_LINKS, Family
from bayesmix.formula.distributional import bf

ROOT = Path(__file__).resolve().parent.parent
FITS = json.loads((ROOT / "tests/reference/families/family_fits.json").read_text())["cases"]
CASES = sorted(FITS)
TOL = 1e-8


def _case(name):
    """(design, DistParams at glmmTMB's / clmm's estimates and modes, the JSON case)."""
    c = FITS[name]
    df = pd.read_csv(ROOT / c["data"])
    f = dict(c["formula"])
    design = build_dist_design(bf(f.pop("formula"), **f), df,
                               family=Family(c["family"], c["link"]))
    beta = {}
    for p in design.predictors:
        if p.dpar in c["fixef"]:
            fx = c["fixef"][p.dpar]
            est = dict(zip(fx["names"], fx["estimate"]))
            assert set(est) == set(p.X_names)
            beta[p.dpar] = [est[n] for n in p.X_names]
        else:  # a constant glmmTMB reports only on its natural scale (student's nu)
            assert p.X_names == ("(Intercept)",)
            beta[p.dpar] = [DPAR_LINKS[p.link][0](c["aux"][p.dpar]["value"])]
    ranef = []
    for t, d in zip(design.terms, design.term_predictor):
        re = c["ranef"][design.predictors[d].dpar][t.group]
        values = dict(zip(re["levels"], re["values"]))
        cols = [re["names"].index(n) for n in t.coef_names]
        ranef.append([[values[lev][j] for j in cols] for lev in t.levels])
    cut = c["fixef"]["cutpoints"]["estimate"] if "cutpoints" in c["fixef"] else None
    return design, DistParams.point(beta, ranef, cut), c


@pytest.fixture(scope="module")
def cases():
    return {name: _case(name) for name in CASES}


# ---------------------------------------------------------------- against glmmTMB / clmm


@pytest.mark.parametrize("name", CASES)
def test_per_row_matches_reference(cases, name):
    """linpred, dpars and log_lik at the reference rows equal the JSON's eta, mu, parameters
    and logpdf (computed in R from the packages' estimates), to 1e-8."""
    design, params, c = cases[name]
    pr = c["per_row"]
    rows = np.asarray(pr["rows"]) - 1
    # the rows are the JSON's (cumulative: categories 1..K all occur, so codes = values)
    np.testing.assert_array_equal(design.y[rows], pr["y"])
    eta = linpred(design, params)
    nat = dpars(design, params)
    assert eta["mu"].shape == (1, design.n)
    np.testing.assert_allclose(eta["mu"][0, rows], pr["eta"], rtol=0, atol=TOL)
    checked = 0
    for dpar, value in nat.items():
        key = dpar
        if dpar == "mu" and design.family.name == "cumulative":
            continue  # no mu in clmm's rows: mu is eta
        np.testing.assert_allclose(value[0, rows], pr[key], rtol=0, atol=TOL * max(
            1.0, float(np.max(np.abs(pr[key])))), err_msg=f"{name}: {dpar}")
        checked += 1
    assert checked == len(design.predictors) - (design.family.name == "cumulative")
    if "trials" in pr:
        np.testing.assert_array_equal(design.trials[rows], pr["trials"])
    np.testing.assert_allclose(log_lik(design, params)[0, rows], pr["logpdf"], rtol=0, atol=TOL)
    if "cutpoints" in pr:
        np.testing.assert_array_equal(params.cutpoints[0], pr["cutpoints"])


def _log_prior(design, params, c):
    """log N(b | 0, Sigma) of the conditional modes, Sigma from the JSON's varcorr (scipy)."""
    total = 0.0
    for t, d, r in zip(design.terms, design.term_predictor, params.ranef):
        vc = c["varcorr"][design.predictors[d].dpar][t.group]
        order = [vc["names"].index(n) for n in t.coef_names]
        sd = np.asarray(vc["sd"])[order]
        cor = np.asarray(vc.get("cor", np.eye(len(sd))))[np.ix_(order, order)]
        cov = cor * np.outer(sd, sd)
        total += stats.multivariate_normal(np.zeros(t.p), cov).logpdf(r[0]).sum()
    return total


@pytest.mark.parametrize("name", [n for n in CASES if "joint_glmmTMB" in FITS[n]["check"]])
def test_all_rows_match_tmb_joint_density(cases, name):
    """Every row: sum_i log_lik + log N(b | 0, Sigma) = TMB's own joint log density at the
    conditional modes (glmmTMB's -obj$env$f; R's own check differs by < 2e-11). lognormal
    was fitted as gaussian on log y: add the Jacobian -sum(log y) (the JSON's). Tolerance
    1e-7 on values ~1e3: 15-digit JSON inputs over 600-800 rows."""
    design, params, c = cases[name]
    chk = c["check"]
    total = log_lik(design, params).sum() + _log_prior(design, params, c)
    expected = chk["joint_glmmTMB"] + chk.get("jacobian", 0.0)
    assert abs(total - expected) < 1e-7, (total, expected)


@pytest.mark.parametrize("name", ["cumulative_logit", "cumulative_probit"])
def test_cumulative_probabilities_match_scipy(cases, name):
    """epred_categories: P(y = k) = F(c_k - eta) - F(c_{k-1} - eta) with scipy's logistic /
    normal CDF; they sum to 1; log_lik is the log of the observed category's probability;
    epred is sum_k k P(y = k)."""
    design, params, c = cases[name]
    probs = epred_categories(design, params)
    K = len(design.categories)
    assert probs.shape == (1, design.n, K)
    eta = linpred(design, params)["mu"][0]
    F = stats.logistic.cdf if c["link"] == "logit" else stats.norm.cdf
    cut = np.concatenate([[-np.inf], c["fixef"]["cutpoints"]["estimate"], [np.inf]])
    ref = F(cut[None, 1:] - eta[:, None]) - F(cut[None, :-1] - eta[:, None])
    np.testing.assert_allclose(probs[0], ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
    y = design.y.astype(int)
    np.testing.assert_allclose(log_lik(design, params)[0], np.log(ref[np.arange(design.n), y - 1]),
                               rtol=1e-10)
    np.testing.assert_allclose(epred(design, params)[0], ref @ np.arange(1, K + 1), rtol=1e-10)


def test_epred_closed_forms(cases):
    """E y by hand (independent of Family.moments) for a few families at the JSON's rows."""
    d, p, c = cases["beta_binomial"]
    pr = c["per_row"]
    rows = np.asarray(pr["rows"]) - 1
    np.testing.assert_allclose(epred(d, p)[0, rows], np.multiply(pr["trials"], pr["mu"]),
                               rtol=1e-12)
    d, p, c = cases["lognormal"]
    pr = c["per_row"]
    rows = np.asarray(pr["rows"]) - 1
    np.testing.assert_allclose(epred(d, p)[0, rows],
                               np.exp(np.asarray(pr["mu"]) + np.asarray(pr["sigma"]) ** 2 / 2),
                               rtol=1e-12)
    d, p, c = cases["hurdle_poisson"]
    pr = c["per_row"]
    rows = np.asarray(pr["rows"]) - 1
    mu, hu = np.asarray(pr["mu"]), np.asarray(pr["hu"])
    np.testing.assert_allclose(epred(d, p)[0, rows], (1 - hu) * mu / -np.expm1(-mu), rtol=1e-12)
    d, p, c = cases["zero_inflated_negbinomial"]
    pr = c["per_row"]
    rows = np.asarray(pr["rows"]) - 1
    mu, zi, shape = (np.asarray(pr[k]) for k in ("mu", "zi", "shape"))
    np.testing.assert_allclose(epred(d, p)[0, rows], (1 - zi) * mu, rtol=1e-12)
    # Var: (1 - zi)(mu + mu^2 (1 + 1/shape)) - ((1 - zi) mu)^2
    np.testing.assert_allclose(variance(d, p)[0, rows],
                               (1 - zi) * (mu + mu ** 2 * (1 + 1 / shape)) - ((1 - zi) * mu) ** 2,
                               rtol=1e-12)


# ---------------------------------------------------------------- newdata and re_form


@pytest.mark.parametrize("name", ["beta", "beta_binomial", "cumulative_logit",
                                  "zero_inflated_poisson_zi_re", "gaussian_sigma", "student"])
def test_newdata_own_rows_reproduce_in_sample(cases, name):
    """newdata = the data's own rows (shuffled) gives the in-sample results row for row."""
    design, params, _ = cases[name]
    order = np.random.default_rng(3).permutation(design.n)
    nd = design.data.iloc[order]
    a, b = dpars(design, params), dpars(design, params, newdata=nd)
    for k in a:
        np.testing.assert_allclose(b[k], a[k][:, order], rtol=0, atol=1e-14)
    np.testing.assert_allclose(epred(design, params, newdata=nd),
                               epred(design, params)[:, order], rtol=0, atol=1e-12)


@pytest.mark.parametrize("re_form", [np.nan, "~0", False, "NA", pd.NA])
def test_population_level_drops_group_effects(cases, re_form):
    """re_form NA / "~0" / False: intercept + slope * x from the JSON's fixed effects only,
    in every predictor (zi's (1 | g) too); re_form="~(1|g)" keeps every term of g."""
    design, params, c = cases["zero_inflated_poisson_zi_re"]
    x = design.data["x"].to_numpy()
    eta = linpred(design, params, re_form=re_form)
    b = c["fixef"]["mu"]["estimate"]
    np.testing.assert_allclose(eta["mu"][0], b[0] + b[1] * x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(eta["zi"][0], c["fixef"]["zi"]["estimate"][0], rtol=0, atol=0)
    nd = design.data[["x"]]  # no g column: not needed at the population level
    np.testing.assert_allclose(linpred(design, params, nd, re_form=re_form)["mu"], eta["mu"],
                               atol=1e-14)
    full = linpred(design, params, re_form="~(1 | g)")
    np.testing.assert_allclose(full["mu"], linpred(design, params)["mu"], atol=0)
    with pytest.raises(FormulaError, match="school"):
        linpred(design, params, re_form="~(1 | school)")


def _new_level_rows(design):
    nd = design.data.iloc[[0, 1, 30, 31]].copy()
    nd["g"] = ["g01", "zz_new", "zz_new", "g02"]
    return nd


def test_new_levels_error_or_zero(cases):
    design, params, c = cases["zero_inflated_poisson_zi_re"]
    nd = _new_level_rows(design)
    with pytest.raises(DataError, match=r"new level\(s\) 'zz_new' of grouping factor 'g'"):
        linpred(design, params, nd)
    eta = linpred(design, params, nd, allow_new_levels=True)
    pop = linpred(design, params, nd, re_form=np.nan)
    full = linpred(design, params, design.data.iloc[[0, 1, 30, 31]])
    for k in ("mu", "zi"):
        np.testing.assert_allclose(eta[k][0, 1:3], pop[k][0, 1:3], atol=1e-14)  # zero effect
        np.testing.assert_allclose(eta[k][0, [0, 3]], full[k][0, [0, 3]], atol=1e-14)
    # leaving g out, new levels are no error (lme4: the terms left out are not looked at)
    linpred(design, params, nd, re_form="~0")


def test_new_level_sampling_modes(cases):
    """Draws of new levels' effects: 'uncertainty' and 'old_levels' pick training levels
    (old_levels: one level for all draws), 'gaussian' draws N(0, sd^2) per draw (sample SD
    within 5% of sd over 4000 draws: its SE is sd / sqrt(2 * 4000) = 1.1%)."""
    design, p1, c = cases["zero_inflated_poisson_zi_re"]
    S = 4000
    r_mu = np.repeat(p1.ranef[0], S, axis=0)
    rng = np.random.default_rng(5)
    r_mu = r_mu + 0.01 * rng.standard_normal(r_mu.shape)  # draws differ between levels
    sd = (np.full((S, 1), 0.3), np.full((S, 1), 0.8))
    params = DistParams({k: np.repeat(v, S, axis=0) for k, v in p1.beta.items()},
                        (r_mu, np.repeat(p1.ranef[1], S, axis=0)), sd=sd)
    nd = _new_level_rows(design)
    pop = linpred(design, params, nd, re_form="~0")
    for mode in ("uncertainty", "old_levels", "gaussian"):
        eta = linpred(design, params, nd, allow_new_levels=True, sample_new_levels=mode, rng=7)
        u = eta["mu"][:, 1] - pop["mu"][:, 1]
        assert np.allclose(eta["mu"][:, 2] - pop["mu"][:, 2], u)  # one effect per new level
        if mode == "gaussian":
            assert abs(u.std() / 0.3 - 1) < 0.05 and abs(u.mean()) < 5 * 0.3 / np.sqrt(S)
            uz = eta["zi"][:, 1] - pop["zi"][:, 1]
            assert abs(uz.std() / 0.8 - 1) < 0.05
            continue
        hits = np.isclose(u[:, None], r_mu[:, :, 0], atol=1e-14)  # (S, levels)
        assert hits.any(axis=1).all()
        levels = np.unique(np.argmax(hits, axis=1))
        assert (len(levels) == 1) if mode == "old_levels" else (len(levels) > 30)
    same = [linpred(design, params, nd, allow_new_levels=True, sample_new_levels="uncertainty",
                    rng=11)["mu"] for _ in range(2)]
    np.testing.assert_array_equal(*same)
    with pytest.raises(DataError, match="needs the group-level SDs"):
        linpred(design, DistParams(params.beta, params.ranef), nd, allow_new_levels=True,
                sample_new_levels="gaussian", rng=1)


# ---------------------------------------------------------------- simulate vs epred


@pytest.mark.parametrize("name", CASES)
def test_simulate_means_match_epred(cases, name):
    """Means of 4000 simulated responses per row (20 rows, the JSON's estimates repeated as
    4000 draws) lie within 5 Monte-Carlo standard errors sqrt(Var y / 4000) of epred (Var y
    from `variance`); the sample variances within 25% of `variance` (student: nu = 3.9 has no
    finite 4th moment, skipped). Cumulative: category frequencies within 5 SE of
    epred_categories."""
    design, p1, _ = cases[name]
    S = 4000
    params = DistParams({k: np.repeat(v, S, 0) for k, v in p1.beta.items()},
                        tuple(np.repeat(r, S, 0) for r in p1.ranef),
                        None if p1.cutpoints is None else np.repeat(p1.cutpoints, S, 0))
    nd = design.data.iloc[:20]
    sims = simulate(design, params, np.random.default_rng(17), newdata=nd)
    assert sims.shape == (S, 20)
    mean, var = epred(design, params, nd), variance(design, params, nd)
    se = np.sqrt(var[0] / S)
    assert np.all(np.abs(sims.mean(0) - mean[0]) < 5 * se), (sims.mean(0) - mean[0]) / se
    if name != "student":
        np.testing.assert_allclose(sims.var(0, ddof=1), var[0], rtol=0.25)
    if design.family.name == "cumulative":
        probs = epred_categories(design, params, nd)[0]
        K = probs.shape[1]
        freq = (sims[:, :, None] == np.arange(1, K + 1)).mean(0)
        assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / S) + 1e-12)
    if design.family.spec.discrete:
        assert np.all(sims == np.round(sims)) and np.all(sims >= 0)


def test_beta_binomial_trials_for_new_data(cases):
    design, params, _ = cases["beta_binomial"]
    nd = design.data.iloc[:5]
    np.testing.assert_allclose(epred(design, params, nd), epred(design, params)[:, :5])
    np.testing.assert_allclose(epred(design, params, nd[["x", "g"]], trials=10),
                               10 * dpars(design, params, nd)["mu"])
    np.testing.assert_allclose(epred(design, params, nd.assign(n=3), trials="n"),
                               3 * dpars(design, params, nd)["mu"])
    with pytest.raises(DataError, match="need the number of trials.*'trials'"):
        simulate(design, params, 1, newdata=nd[["x", "g"]])
    sims = simulate(design, params, 1, newdata=nd[["x", "g"]], trials=[0, 1, 2, 3, 4])
    assert np.all(sims <= np.arange(5)) and sims[0, 0] == 0


# ---------------------------------------------------------------- hostile input


def test_hostile_newdata_names_the_column(cases):
    design, params, _ = cases["zero_inflated_poisson_zi_re"]
    nd = design.data.iloc[:4]
    with pytest.raises(DataError, match="lacks column.*'x'"):
        linpred(design, params, nd.drop(columns="x"))
    with pytest.raises(DataError, match="lacks column.*'g'"):
        epred(design, params, nd.drop(columns="g"))
    with pytest.raises(DataError, match="missing values in x"):
        dpars(design, params, nd.assign(x=[0.1, np.nan, 0.2, 0.3]))
    with pytest.raises(DataError, match="missing values in g"):
        simulate(design, params, 1, newdata=nd.assign(g=["g01", None, "g02", "g03"]))
    with pytest.raises(DataError, match="'x'.*non-finite"):
        linpred(design, params, nd.assign(x=[0.1, np.inf, 0.2, 0.3]))
    with pytest.raises(DataError, match="must be a pandas DataFrame"):
        linpred(design, params, {"x": [1.0], "g": ["g01"]})
    with pytest.raises(DataError, match="no rows"):
        linpred(design, params, nd.iloc[:0])


def test_params_validation_names_the_culprit(cases):
    design, p, _ = cases["zero_inflated_poisson_zi_re"]
    with pytest.raises(DataError, match="lacks 'zi'"):
        linpred(design, DistParams({"mu": p.beta["mu"]}, p.ranef))
    with pytest.raises(DataError, match=r"beta\['mu'\] has shape \(1, 3\).*\(Intercept\), x"):
        linpred(design, DistParams({**p.beta, "mu": np.zeros((1, 3))}, p.ranef))
    with pytest.raises(DataError, match=r"ranef\[1\] \(term \(\(Intercept\) \| g\) of zi\)"):
        linpred(design, DistParams(p.beta, (p.ranef[0], np.zeros((1, 39, 1)))))
    with pytest.raises(DataError, match="ranef has 1 terms; the model has 2"):
        linpred(design, DistParams(p.beta, p.ranef[:1]))
    with pytest.raises(DataError, match="same number of draws"):
        DistParams({"mu": np.zeros((2, 2)), "zi": np.zeros((1, 1))})
    with pytest.raises(DataError, match="non-finite"):
        DistParams({"mu": [[np.nan, 1.0]]})
    with pytest.raises(DataError, match="cutpoints given"):
        linpred(design, DistParams(p.beta, p.ranef, [[0.0, 1.0]]))
    design, p, _ = cases["cumulative_logit"]
    with pytest.raises(DataError, match=r"cutpoints must be \(1, 4\)"):
        log_lik(design, DistParams(p.beta, p.ranef))
    with pytest.raises(DataError, match="increase strictly; draw 0"):
        DistParams(p.beta, p.ranef, [[0.0, 1.0, 0.5, 2.0]])


# ---------------------------------------------------------------- the programs' layout


@pytest.mark.parametrize("name", ["beta", "zero_inflated_poisson_zi_re", "cumulative_probit"])
def test_from_stacked_matches_stan_data_layout(cases, name):
    """DistParams.from_stacked reads the contract's layout (b: predictor blocks side by side;
    r_all: term, level, coefficient), and linpred equals the contract's dist_linpred written
    out on dist_stan_data's X, J, Z (eta_d = X_d b_d + offset + sum of Z r[J])."""
    design, p, _ = cases[name]
    data = dist_stan_data(design)
    b = np.concatenate([p.beta[pr.dpar][0] for pr in design.predictors])
    r_all = np.concatenate([r[0].reshape(-1) for r in p.ranef]) if p.ranef else np.zeros(0)
    cut = None if p.cutpoints is None else p.cutpoints[0]
    q = DistParams.from_stacked(design, b, r_all, cut)
    # dist_linpred by the contract's formulas
    eta = np.zeros((data["N"], data["D"]))
    at = 0
    for d in range(data["D"]):
        k = data["K_lp"][d]
        eta[:, d] = data["X"][:, at:at + k] @ b[at:at + k]
        at += k
    if data["has_offset"]:
        eta[:, 0] += data["offsets"]
    start, zcol = 0, 0
    for t in range(data["n_terms"]):
        pk, lk = data["p_term"][t], data["l_term"][t]
        for m in range(pk):
            pos = start + (data["J"][t] - 1) * pk + m
            eta[:, data["lp_term"][t] - 1] += data["Z"][:, zcol + m] * r_all[pos]
        start += lk * pk
        zcol += pk
    got = linpred(design, q)
    for d, pr in enumerate(design.predictors):
        np.testing.assert_allclose(got[pr.dpar][0], eta[:, d], rtol=0, atol=1e-13)
    np.testing.assert_allclose(log_lik(design, q), log_lik(design, p), rtol=0, atol=0)
    with pytest.raises(DataError, match="r_all must be"):
        DistParams.from_stacked(design, b, r_all[:-1], cut)


def test_offset_from_newdata():
    """mu's offset comes from newdata's columns (log(exposure) here), by hand."""
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"y": rng.poisson(2.0, 60), "x": rng.standard_normal(60),
                       "e": rng.uniform(1, 3, 60), "g": np.repeat([f"a{i}" for i in range(6)], 10)})
    design = build_dist_design(bf("y ~ x + offset(log(e)) + (1 | g)", zi="~ 1"), df,
                               family="zero_inflated_poisson")
    p = DistParams.point({"mu": [0.2, 0.5], "zi": [-1.0]}, [np.linspace(-0.5, 0.5, 6)[:, None]])
    nd = pd.DataFrame({"x": [0.0, 1.0], "e": [1.0, 2.0], "g": ["a0", "a5"]})
    eta = linpred(design, p, nd)["mu"][0]
    np.testing.assert_allclose(eta, [0.2 - 0.5 + 0.0, 0.2 + 0.5 + np.log(2.0) + 0.5], atol=1e-14)
    np.testing.assert_allclose(epred(design, p, nd)[0], (1 - special.expit(-1.0)) * np.exp(eta),
                               rtol=1e-14)
    with pytest.raises(DataError, match="lacks column.*'e'"):
        linpred(design, p, nd.drop(columns="e"))


def test_gaussian_new_levels_of_a_correlated_term(cases):
    """beta's (1 + x | g): new-level effects (u0, u1) recovered from two rows of one new level
    (x = 0 and x = 1) have the sd's and correlation given (4000 draws: SE of an SD ~1.1%,
    of the correlation ~(1 - rho^2)/sqrt(S) = 0.012; tolerances 5% and 0.06)."""
    design, p1, c = cases["beta"]
    S, sd, rho = 4000, np.array([0.4, 0.3]), 0.6
    params = DistParams({k: np.repeat(v, S, 0) for k, v in p1.beta.items()},
                        (np.repeat(p1.ranef[0], S, 0),), sd=(np.tile(sd, (S, 1)),),
                        cor=(np.tile([[1.0, rho], [rho, 1.0]], (S, 1, 1)),))
    nd = pd.DataFrame({"x": [0.0, 1.0], "g": ["new", "new"]})
    eta = linpred(design, params, nd, allow_new_levels=True, sample_new_levels="gaussian",
                  rng=np.random.default_rng(9))["mu"]
    pop = linpred(design, params, nd, re_form=np.nan)["mu"]
    u0 = eta[:, 0] - pop[:, 0]
    u1 = eta[:, 1] - pop[:, 1] - u0
    np.testing.assert_allclose([u0.std(), u1.std()], sd, rtol=0.05)
    assert abs(np.corrcoef(u0, u1)[0, 1] - rho) < 0.06
    with pytest.raises(DataError, match=r"correlations of the correlated term \(\(Intercept\) "
                                         r"\+ x \| g\)"):
        linpred(design, DistParams(params.beta, params.ranef, sd=params.sd), nd,
                allow_new_levels=True, sample_new_levels="gaussian", rng=1)
