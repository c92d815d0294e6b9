"""Linear-mixed-model math against lme4's reference results (numpy only, no Stan compile).

At lme4's own theta every quantity that is a function of theta (deviance, REML criterion, fixed
effects, sigma, standard errors, conditional modes and SDs) must reproduce lme4's numbers almost
exactly; the three numpy routes (dense, block elimination, mirror of the Stan program) must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmix.lmm import (
    as_terms,
    deviance_from_stan_data,
    factors_to_theta,
    k_matrix,
    lmm_estimates,
    lmm_stan_data,
    lmm_stan_inits,
    lmm_suffstats,
    normalize_theta,
    profiled_deviance,
    theta_start,
    theta_to_factors,
)

ROOT = Path(__file__).resolve().parents[1]
REF = json.loads((ROOT / "tests" / "reference" / "lme4_refs.json").read_text())

# case -> response, fixed-effect columns (besides the intercept), intercept?, terms (group, coefs)
_LMM = dict(y="extro", x=["open", "agree", "social"], intercept=True)
_SLEEP = dict(y="Reaction", x=["Days"], intercept=True)
SPECS = {
    "lmmdata_school_REML": dict(_LMM, terms=[("school", ["1"])]),
    "lmmdata_school_ML": dict(_LMM, terms=[("school", ["1"])]),
    "lmmdata_school_class_REML": dict(_LMM, terms=[("school", ["1"]), ("class", ["1"])]),
    "lmmdata_school_class_ML": dict(_LMM, terms=[("school", ["1"]), ("class", ["1"])]),
    "lmmdata_nested_REML": dict(_LMM, terms=[("class:school", ["1"]), ("school", ["1"])]),
    "lmmdata_nested_ML": dict(_LMM, terms=[("class:school", ["1"]), ("school", ["1"])]),
    "lmmdata_nested_slope_REML": dict(
        _LMM, terms=[("class:school", ["1", "open"]), ("school", ["1", "open"])]),
    "sleepstudy_slope_REML": dict(_SLEEP, terms=[("Subject", ["1", "Days"])]),
    "sleepstudy_slope_ML": dict(_SLEEP, terms=[("Subject", ["1", "Days"])]),
    "sleepstudy_uncorr_REML": dict(_SLEEP, terms=[("Subject", ["1"]), ("Subject", ["Days"])]),
    "sleepstudy_intercept_ML": dict(_SLEEP, terms=[("Subject", ["1"])]),
    "penicillin_crossed_REML": dict(y="diameter", x=[], intercept=True,
                                    terms=[("plate", ["1"]), ("sample", ["1"])]),
    "pastes_nested_REML": dict(y="strength", x=[], intercept=True,
                               terms=[("cask:batch", ["1"]), ("batch", ["1"])]),
    "dyestuff_REML": dict(y="Yield", x=[], intercept=True, terms=[("Batch", ["1"])]),
    "dyestuff_ML": dict(y="Yield", x=[], intercept=True, terms=[("Batch", ["1"])]),
    "insteval_REML": dict(y="y", x=["service1"], intercept=True,
                          terms=[("s", ["1"]), ("d", ["1"]), ("dept:service", ["1"])]),
}
FAST = [c for c in SPECS if c != "insteval_REML"]
ALL = FAST + [pytest.param("insteval_REML", marks=pytest.mark.slow)]


def _levels(case: dict, dinfo: dict, group: str) -> list[str]:
    rf = case["results"]["ranef"].get(group)
    if rf and not rf.get("omitted"):
        return list(rf["levels"])
    if ":" in group:  # lme4's interaction levels: first factor varies slowest
        a, b = group.split(":")
        return [f"{x}:{z}" for x in dinfo[a]["levels"] for z in dinfo[b]["levels"]]
    return list(dinfo[group]["levels"])


_CACHE: dict = {}


def load_case(name: str):
    """X, y, terms (index, Z, n_levels), level names, the reference results."""
    if name in _CACHE:
        return _CACHE[name]
    case = REF["cases"][name]
    spec = SPECS[name]
    dfile = case["data_file"].split("/")[-1]
    dinfo = REF["data"][dfile]["columns"]
    df = pd.read_csv(ROOT / "bayesmix" / "datasets" / dfile, dtype=str)
    for col, info in dinfo.items():
        if info["type"] != "factor":
            df[col] = df[col].astype(float)
    if name == "insteval_REML":
        df["service1"] = (df["service"] == "1").astype(float)
    n = len(df)
    X = np.column_stack([np.ones(n)] * spec["intercept"] + [df[c].to_numpy(float)
                                                           for c in spec["x"]])
    y = df[spec["y"]].to_numpy(float)
    terms, levels = [], []
    for group, coefs in spec["terms"]:
        lv = _levels(case, dinfo, group)
        key = df[group] if ":" not in group else df[group.split(":")[0]] + ":" + df[group.split(":")[1]]
        codes = pd.Categorical(key, categories=lv).codes.astype(np.int64)
        used = np.unique(codes)
        assert codes.min() >= 0
        if len(used) < len(lv):  # interaction levels absent from the data are dropped
            lv = [lv[i] for i in used]
            codes = np.searchsorted(used, codes)
        Z = np.column_stack([np.ones(n) if c == "1" else df[c].to_numpy(float) for c in coefs])
        terms.append((codes, Z, len(lv)))
        levels.append(lv)
    res = case["results"]
    assert list(res["ngrps"].values())[: len(terms)] == [t[2] for t in terms][: len(res["ngrps"])] \
        or name == "sleepstudy_uncorr_REML"
    out = (X, y, terms, levels, res)
    _CACHE[name] = out
    return out


def ref_theta(res) -> np.ndarray:
    return np.array(list(res["theta"].values()), dtype=float)


def ref_objective(name, res) -> float:
    return res["REMLcrit"] if name.endswith("REML") else -2.0 * res["logLik"]


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)) if a.size else 0.0


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_deviance_at_reference_theta(name):
    X, y, terms, _, res = load_case(name)
    reml = name.endswith("REML")
    th = ref_theta(res)
    want = ref_objective(name, res)
    ss = lmm_suffstats(X, y, terms)
    d_block = profiled_deviance(th, X, y, terms, reml, method="block", ss=ss)
    assert abs(d_block - want) < 1e-6
    d_dense = profiled_deviance(th, X, y, terms, reml, method="dense")
    assert abs(d_dense - want) < 1e-6
    # the other criterion at the same theta: lme4's ML deviance at the REML fit
    if reml:
        d_ml = profiled_deviance(th, X, y, terms, False, method="block", ss=ss)
        assert abs(d_ml - res["deviance_ML_at_REML_fit"]) < 1e-6


@pytest.mark.parametrize("name", ALL)
def test_estimates_match_lme4(name):
    X, y, terms, levels, res = load_case(name)
    reml = name.endswith("REML")
    est = lmm_estimates(ref_theta(res), X, y, terms, reml)
    tol = 1e-6
    assert rel(est.beta, list(res["fixef"].values())) < tol
    assert rel(est.se, list(res["fixef_se"].values())) < tol
    assert rel(est.vcov, np.array(res["vcov_fixef"])) < tol
    assert rel(est.sigma, res["sigma"]) < tol
    assert abs(est.logLik - res["logLik"]) < 1e-6
    dc = res["devcomp_cmp"]
    assert rel(est.ldL2, dc["ldL2"]) < 1e-9 + tol
    assert rel(est.ldRX2, dc["ldRX2"]) < tol
    assert rel(est.pwrss, dc["pwrss"]) < tol
    assert rel(est.wrss, dc["wrss"]) < tol
    assert rel(est.ussq, dc["ussq"]) < tol
    assert rel(est.sigma_ml, dc["sigmaML"]) < tol
    assert rel(est.sigma_reml, dc["sigmaREML"]) < tol
    # variance components in lme4's varcorr_table order (term by term, sds then correlations)
    table = [r for r in res["varcorr_table"] if r["grp"] != "Residual"]
    got = []
    for sd, cor in zip(est.varcorr_sd, est.varcorr_cor):
        got += list(sd)
        pk = len(sd)
        got += [cor[i, j] for j in range(pk) for i in range(j + 1, pk)]
    # (no exemption: the singular nested-slope fit's correlations of -1 match lme4's too)
    assert rel(got, [r["sdcor"] for r in table]) < 1e-6
    # conditional modes and SDs, for every term lme4 reported
    spec_terms = SPECS[name]["terms"]
    for k, (group, coefs) in enumerate(spec_terms):
        rf = res["ranef"].get(group)
        if rf is None or rf.get("omitted"):
            continue
        assert rf["levels"] == levels[k]
        names = [c if c != "1" else "(Intercept)" for c in coefs]
        for r, cname in enumerate(names):
            want_b = np.array(rf["values"][cname])
            want_sd = np.array(rf["condsd"][cname])
            # absolute tolerance relative to the term's scale (some modes are ~0)
            scale = np.max(np.abs(want_b))
            assert np.max(np.abs(est.ranef[k][:, r] - want_b)) < tol * scale, (group, cname)
            assert rel(est.condsd[k][:, r], want_sd) < tol, (group, cname)
    assert rel(est.fitted[:5], res["predict_first5"]["re_form_NULL"]) < tol
    assert est.singular == bool(res["isSingular"])


@pytest.mark.parametrize("name", FAST)
def test_stan_algebra_equals_dense(name):
    """The numpy mirror of lmer.stan (K product, lower-triangle symmetrisation) vs the dense route."""
    X, y, terms, _, res = load_case(name)
    reml = name.endswith("REML")
    data = lmm_stan_data(X, y, terms, reml)
    rng = np.random.default_rng(1)
    th0 = ref_theta(res)
    for th in [th0, theta_start(terms), th0 * rng.uniform(0.3, 2.0, th0.size)
               + rng.normal(0, 0.2, th0.size)]:
        d_dense = profiled_deviance(th, X, y, terms, reml, method="dense")
        d_stan = deviance_from_stan_data(th, data)
        d_block = profiled_deviance(th, X, y, terms, reml, method="block")
        assert abs(d_stan - d_dense) < 1e-10 * max(1.0, abs(d_dense)), (d_stan, d_dense)
        assert abs(d_block - d_dense) < 1e-10 * max(1.0, abs(d_dense))


@pytest.mark.slow
def test_stan_algebra_insteval():
    X, y, terms, _, res = load_case("insteval_REML")
    data = lmm_stan_data(X, y, terms, True)
    th = ref_theta(res)
    d_stan = deviance_from_stan_data(th, data)
    assert abs(d_stan - res["REMLcrit"]) < 1e-6


@pytest.mark.parametrize("name", ["sleepstudy_slope_REML", "lmmdata_nested_slope_REML"])
def test_sign_flip_invariance(name):
    X, y, terms, _, res = load_case(name)
    reml = name.endswith("REML")
    th = ref_theta(res)
    factors = theta_to_factors(th, terms)
    flipped = []
    for T in factors:
        T = T.copy()
        T[:, 0] *= -1.0
        flipped.append(T)
    th_f = factors_to_theta(flipped)
    assert not np.allclose(th_f, th)
    d0 = profiled_deviance(th, X, y, terms, reml)
    d1 = profiled_deviance(th_f, X, y, terms, reml)
    assert abs(d0 - d1) < 1e-9
    assert np.allclose(normalize_theta(th_f, terms), normalize_theta(th, terms))


def test_theta_order_and_start():
    X, y, terms, _, res = load_case("sleepstudy_slope_REML")
    assert list(res["theta"]) == ["Subject.(Intercept)", "Subject.Days.(Intercept)",
                                  "Subject.Days"]
    T = theta_to_factors(ref_theta(res), terms)[0]
    assert T[0, 0] == res["theta"]["Subject.(Intercept)"]
    assert T[1, 0] == res["theta"]["Subject.Days.(Intercept)"]
    assert T[1, 1] == res["theta"]["Subject.Days"]
    assert T[0, 1] == 0.0
    assert theta_start(terms).tolist() == [1.0, 0.0, 1.0]
    assert lmm_stan_inits(terms) == {"theta": [1.0, 0.0, 1.0]}


def test_stan_data_shapes():
    X, y, terms, _, _ = load_case("lmmdata_nested_slope_REML")
    data = lmm_stan_data(X, y, terms, True)
    assert data["N"] == 1200 and data["P"] == 4 and data["n_terms"] == 2
    assert data["p_term"] == [2, 2] and data["l_term"] == [24, 6]
    assert data["n_theta"] == 6 and data["theta_start"] == [1, 4]
    assert data["Q2"] == 12 and data["M"] == 12 + 4 + 1
    # crossed terms: the dense path's B = Z1'Zh level by level (24 levels, 2 values per
    # column); no K
    assert data["diag_q2"] == 0 and data["K_rows"] == data["K_nz"] == 0 and data["K_u"] == [1]
    assert len(data["B_u"]) == 24 + 1 and data["B_u"][0] == 1
    assert data["B_u"][-1] == data["B_nz"] + 1 and len(data["B_w"]) == 2 * data["B_nz"]
    assert min(data["B_v"]) >= 1 and max(data["B_v"]) <= data["M"]
    assert len(data["ZhZh_u"]) == data["M"] + 1
    assert all(isinstance(i, int) for i in data["B_v"][:10] + data["B_u"][:10])
    assert np.array(data["C1"]).shape == (24, 2, 2)
    json.dumps(data)  # serialisable
    # single term: no Z2 block
    X, y, terms, _, _ = load_case("sleepstudy_slope_REML")
    data = lmm_stan_data(X, y, terms, False)
    assert data["Q2"] == 0 and data["M"] == 3 and data["REML"] == 0


def test_k_matrix_full_equals_blocks():
    """K w reproduces sum_j B_j' W_j B_j for an arbitrary symmetric w (full K)."""
    X, y, terms, _, _ = load_case("lmmdata_nested_slope_REML")
    ss = lmm_suffstats(X, y, terms)
    K = k_matrix(ss, lower_only=False)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(24, 2, 2))
    W = W + np.swapaxes(W, 1, 2)
    # W_j stacked column-major: W.transpose(0, 2, 1) flattened C-order == vec(W_j) col-major
    Q = (K @ np.transpose(W, (0, 2, 1)).reshape(-1)).reshape(ss.M, ss.M, order="F")
    Bd = ss.B.toarray()
    Q_ref = sum(Bd[2 * j:2 * j + 2].T @ W[j] @ Bd[2 * j:2 * j + 2] for j in range(24))
    assert np.allclose(Q, Q_ref, rtol=1e-12, atol=1e-8)


def test_centering_does_not_change_deviance():
    X, y, terms, _, res = load_case("sleepstudy_slope_ML")
    th = ref_theta(res)
    ss_c = lmm_suffstats(X, y, terms)
    ss_u = lmm_suffstats(X, y, terms, center_y=False)
    assert ss_c.y_offset == pytest.approx(np.mean(y)) and ss_u.y_offset == 0.0
    d_c = profiled_deviance(th, X, y, terms, False, method="block", ss=ss_c)
    d_u = profiled_deviance(th, X, y, terms, False, method="block", ss=ss_u)
    assert abs(d_c - d_u) < 1e-8
    e_c = lmm_estimates(th, X, y, terms, False, ss=ss_c)
    e_u = lmm_estimates(th, X, y, terms, False, ss=ss_u)
    assert np.allclose(e_c.beta, e_u.beta, rtol=1e-10)


def test_accepts_objects_with_attributes():
    X, y, terms, _, res = load_case("dyestuff_REML")

    class T:  # duck-typed RandomTerm
        def __init__(self, index, Z, n_levels):
            self.index, self.Z, self.n_levels = index, Z, n_levels

    objs = [T(i, Z[:, 0], n) for i, Z, n in terms]  # 1-d Z accepted
    assert as_terms(objs)[0].p == 1
    d = profiled_deviance(ref_theta(res), X, y, objs, True)
    assert abs(d - res["REMLcrit"]) < 1e-6


# ---------------------------------------------------------------------------------------------
# Term shapes the references do not cover: p_k = 1 and p_k > 1 mixed among terms 2..K, no
# intercept, no fixed effects at all.


def _mixed_model():
    X, y, terms, _, _ = load_case("lmmdata_nested_slope_REML")
    df = pd.read_csv(ROOT / "bayesmix" / "datasets" / "lmmdata.csv")
    (i1, Z1, l1), (i2, _, l2) = terms
    mix = [(i1, Z1, l1),  # (1 + open | class:school)
           (i2, np.ones(len(y)), l2),  # (1 | school)
           (i2, np.column_stack([df["open"], df["agree"]]), l2),  # (0 + open + agree | school)
           (pd.Categorical(df["class"]).codes.astype(np.int64), df["social"].to_numpy(), 4)]
    theta = np.array([2.0, -0.01, 0.02, 5.0, 0.01, 0.003, 0.002, 0.004])
    return X, y, mix, theta


def _dense_estimates(theta, X, y, terms, reml):
    """Independent conditional modes and variances from a dense A (tests only)."""
    import scipy.linalg as sla
    from bayesmix.lmm import lambda_matrix, random_design
    from bayesmix.lmm.profiled import _dense_pls

    r = _dense_pls(theta, X, y, terms)
    n, p = X.shape
    sigma2 = r["r2"] / ((n - p) if reml else n)
    Lam = lambda_matrix(theta, terms).toarray()
    Ainv = sla.cho_solve((r["L"], True), np.eye(Lam.shape[0]))
    V = sigma2 * Lam @ Ainv @ Lam.T
    return r["beta"], Lam @ r["u"], np.sqrt(np.diag(V))


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("xcols", ["all", "none", "no_intercept"])
def test_mixed_term_shapes_all_routes(reml, xcols):
    X, y, terms, theta = _mixed_model()
    X = {"all": X, "none": X[:, :0], "no_intercept": X[:, 1:]}[xcols]
    data = lmm_stan_data(X, y, terms, reml)
    assert data["p_term"] == [2, 1, 2, 1] and data["theta_start"] == [1, 4, 5, 8]
    d_dense = profiled_deviance(theta, X, y, terms, reml, method="dense")
    d_block = profiled_deviance(theta, X, y, terms, reml, method="block")
    d_stan = deviance_from_stan_data(theta, data)
    assert abs(d_block - d_dense) < 1e-11 * abs(d_dense)
    assert abs(d_stan - d_dense) < 1e-11 * abs(d_dense)
    est = lmm_estimates(theta, X, y, terms, reml)
    beta, b, sd = _dense_estimates(theta, X, y, terms, reml)
    assert np.allclose(est.beta, beta, rtol=1e-9, atol=1e-12)
    got_b = np.concatenate([r.ravel() for r in est.ranef])
    got_sd = np.concatenate([s.ravel() for s in est.condsd])
    assert np.allclose(got_b, b, rtol=1e-8, atol=1e-10 * np.max(np.abs(b)))
    assert np.allclose(got_sd, sd, rtol=1e-9)
    assert abs(est.objective - d_dense) < 1e-11 * abs(d_dense)


def test_lmer_stan_compiles(tmp_path):
    """stan/lmer.stan (with its #include) translates to C++ with the bundled stanc (its C++
    function lmm_dense_factor declared without a body: stan/lmm_reduce.hpp)."""
    import subprocess

    httpstan = pytest.importorskip("httpstan")
    stanc = Path(httpstan.__file__).parent / "stanc"
    if not stanc.exists():
        pytest.skip("bundled stanc not found")
    hpp = tmp_path / "lmer.hpp"  # never write beside the sources
    out = subprocess.run([str(stanc), "--allow-undefined", f"--include-paths={ROOT / 'stan'}",
                          f"--o={hpp}", str(ROOT / "stan" / "lmer.stan")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "lmm_reduce" in hpp.read_text()


@pytest.mark.parametrize("name", ALL)
def test_with_build_design(name):
    """The functions take bayesmix.design's RandomTerm objects as they are."""
    try:
        from bayesmix.datasets import load
        from bayesmix.design import build_design
    except ImportError:  # pragma: no cover - the design stage is another engineer's
        pytest.skip("bayesmix.design not available")
    case = REF["cases"][name]
    res = case["results"]
    reml = name.endswith("REML")
    design = build_design(case["formula"], load(case["data"]))
    th = ref_theta(res)
    d = profiled_deviance(th, design.X, design.y, design.terms, reml, method="block")
    assert abs(d - ref_objective(name, res)) < 1e-6
    est = lmm_estimates(th, design.X, design.y, design.terms, reml)
    assert rel(est.beta, list(res["fixef"].values())) < 1e-6
    for term, b in zip(design.terms, est.ranef):
        rf = res["ranef"].get(term.group)
        if rf is None or rf.get("omitted") or term.coef_names[0] not in rf["values"]:
            continue
        want = np.array(rf["values"][term.coef_names[0]])
        assert np.max(np.abs(b[:, 0] - want)) < 1e-6 * np.max(np.abs(want))


def _nested_terms(rng, n=600, n_a=12, per_a=5, slope=False):
    a = rng.integers(0, n_a, n)
    b = a * per_a + rng.integers(0, per_a, n)          # b nested in a
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.7, n_a)[a] + rng.normal(0, 0.5, n_a * per_a)[b] \
        + rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    Zb = np.column_stack([np.ones(n), x]) if slope else np.ones((n, 1))
    terms = as_terms([(b, Zb, n_a * per_a), (a, np.ones((n, 1)), n_a)])
    return X, y, terms


@pytest.mark.parametrize("reml", [False, True])
def test_diagonal_q2_block_compact_route(reml):
    """(1 | a/b): the a block of S is diagonal, lmm_stan_data switches to the compact K and
    the numpy mirror of lmer.stan's diag_q2 path gives the dense route's deviance (1e-10)."""
    from bayesmix.lmm.suffstats import q2_is_diagonal
    rng = np.random.default_rng(7)
    for slope in (False, True):   # first term scalar, then with a correlated slope
        X, y, terms = _nested_terms(rng, slope=slope)
        assert q2_is_diagonal(lmm_suffstats(X, y, terms))
        data = lmm_stan_data(X, y, terms, reml)
        assert data["diag_q2"] == 1 and data["K_rows"] == data["Q2"] + 3 * data["M"]
        assert len(data["K_u"]) == data["K_rows"] + 1
        for th in (theta_start(terms), rng.uniform(0.2, 2.0, len(theta_start(terms)))):
            dense = profiled_deviance(th, X, y, terms, reml, method="dense")
            assert deviance_from_stan_data(th, data) == pytest.approx(dense, rel=1e-10)
    # crossed factors: not diagonal, the dense path's B instead of K
    n = 400
    g, h = rng.integers(0, 20, n), rng.integers(0, 8, n)
    terms = as_terms([(g, np.ones((n, 1)), 20), (h, np.ones((n, 1)), 8)])
    X, y = np.ones((n, 1)), rng.normal(size=n)
    assert not q2_is_diagonal(lmm_suffstats(X, y, terms))
    data = lmm_stan_data(X, y, terms, reml)
    assert data["diag_q2"] == 0 and data["K_rows"] == 0 and data["B_nz"] > 0
    assert data["B_nz"] == lmm_suffstats(X, y, terms).B.nnz  # scalar first term: B's own
