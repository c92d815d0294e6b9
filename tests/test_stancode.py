"""The joint program generator: layout, structure-only code, priors, stanc on
every variant, and (slow) a compile-and-sample run of each family's program."""

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError
from bayesmix.families import get_family
from bayesmix.priors import PriorError, prior, prior_summary
from bayesmix.stancode import (BLOCK_ORDER, Blocks, assemble, joint_program, joint_stan_data,
                               joint_stancode)


@pytest.fixture(scope="module")
def sim():
    """Small simulated data with a response for every family."""
    rng = np.random.default_rng(7)
    n, ng = 240, 12
    g = rng.integers(0, ng, n)
    h = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.4 * x + rng.normal(0, 0.4, ng)[g] + rng.normal(0, 0.3, 5)[h]
    df = pd.DataFrame({
        "g": pd.Categorical([f"g{i:02d}" for i in g]),
        "h": pd.Categorical([f"h{i}" for i in h]),
        "x": x,
        "expo": rng.uniform(1, 3, n),
        "w": rng.uniform(0.5, 2, n),
        "yg": eta + rng.normal(0, 0.5, n),
        "ypos": rng.gamma(5, np.exp(eta) / 5),
        "ybern": rng.binomial(1, 1 / (1 + np.exp(-eta))),
        "ycount": rng.poisson(np.exp(eta)),
        "ynb": rng.negative_binomial(4, 4 / (4 + np.exp(eta))),
        "ntrial": rng.integers(5, 15, n),
    })
    df["ysucc"] = rng.binomial(df["ntrial"], 1 / (1 + np.exp(-eta)))
    df["yinv"] = rng.gamma(5, 1 / (2 + 0.3 * x) / 5)
    return df


RESPONSE = {"gaussian": "yg", "Gamma": "ypos", "bernoulli": "ybern", "poisson": "ycount",
            "negbinomial": "ynb", "binomial": "cbind(ysucc, ntrial - ysucc)"}


def _design(df, rhs, family="gaussian", link=None, weights=None):
    fam = get_family(family, link)
    y = RESPONSE[fam.name]
    if fam.name == "Gamma" and fam.link in ("inverse", "identity"):
        y = "yinv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_design(f"{y} ~ {rhs}", df, family=fam, weights=weights)


def _stanc(code: str, tmp_path: Path, name: str = "m") -> None:
    import httpstan
    stanc = Path(httpstan.__file__).parent / "stanc"
    if not stanc.exists():
        pytest.skip("bundled stanc not found")
    f = tmp_path / f"{name}.stan"
    f.write_text(code)
    out = subprocess.run([str(stanc), str(f), f"--o={tmp_path / (name + '.hpp')}"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + "\n" + code


# -- the assembler -------------------------------------------------------------

def test_assembler_orders_blocks_and_indents():
    parts = Blocks(model=["y ~ normal(mu, 1);"], data=["int N;"])
    parts += Blocks(parameters=["real mu;"], model=["for (i in 1:N) {", "// c { }", "}"],
                    generated_quantities=["real z = mu;"])
    code = assemble(parts, ["header"])
    assert code.startswith("// header\n")
    names = [name for _, name in BLOCK_ORDER]
    found = [ln[:-2] for ln in code.splitlines() if ln.endswith(" {") and not ln.startswith(" ")]
    assert found == [n for n in names if n in found] == ["data", "parameters", "model",
                                                         "generated quantities"]
    assert "  for (i in 1:N) {\n    // c { }\n  }" in code
    assert "transformed data" not in code


# -- layout of the generated program ---------------------------------------------

def test_sleepstudy_program_layout():
    d = build_design("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    code = joint_stancode(d, annotate=False)
    for piece in [
        "matrix[N, Kc] Xc;", "real Intercept;", "vector<lower=0>[M_1] sd_1;",
        "matrix[M_1, N_1] z_1;", "cholesky_factor_corr[M_1] L_1;",
        "matrix[N_1, M_1] r_1 = (diag_pre_multiply(sd_1, L_1) * z_1)';",
        "to_vector(z_1) ~ std_normal();", "L_1 ~ lkj_corr_cholesky(1);",
        "target += normal_id_glm_lpdf(Y | Xc, mu, b, sigma);",
        "mu += r_1[J_1, 1] .* Z_1_1 + r_1[J_1, 2] .* Z_1_2;",
        "real b_Intercept = Intercept - dot_product(means_X, b);",
        "corr_matrix[M_1] Cor_1 = multiply_lower_tri_self_transpose(L_1);",
        "vector[save_log_lik ? N : 0] log_lik;", "y_rep = normal_rng(mu, sigma);",
        "int<lower=0, upper=1> prior_only;", "if (!prior_only) {",
    ]:
        assert piece in code, piece
    # structure only: no data values and no names from the data
    assert "Subject" not in code and "Days" not in code and "251" not in code
    annotated = joint_stancode(d)
    assert annotated.startswith("// Formula: Reaction ~ Days + (Days | Subject)")
    assert "Subject, 18 levels" in annotated and annotated.endswith(code.split("\n", 1)[1])


def test_same_shape_same_code():
    pen = build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", load("Penicillin"))
    lmm = build_design("extro ~ open + agree + social + (1 | school/class)", load("lmmdata"))
    assert joint_stancode(pen, annotate=False) == joint_stancode(lmm, annotate=False)
    assert joint_program(pen).name == joint_program(lmm).name
    sl = build_design("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    assert joint_stancode(sl, annotate=False) != joint_stancode(pen, annotate=False)
    # the default prior scales are data, not code
    dpen, dlmm = joint_stan_data(pen), joint_stan_data(lmm)
    assert dpen["prior_sd_scale"] != dlmm["prior_sd_scale"]


def test_data_names_match_code(sim):
    d = _design(sim, "x + offset(log(expo)) + (1 + x | g) + (1 | h)", "poisson", weights="w")
    prog = joint_program(d)
    data = joint_stan_data(d)
    declared = []
    in_data = False
    for ln in prog.code.splitlines():
        if ln.startswith("data {"):
            in_data = True
        elif in_data and ln.startswith("}"):
            break
        elif in_data and ";" in ln and not ln.strip().startswith("//"):
            declared.append(ln.split(";")[0].split()[-1])
    assert sorted(declared) == sorted(data)
    assert data["J_1"].min() == 1 and data["J_1"].max() == data["N_1"] == 12
    assert data["Y"].dtype.kind == "i" and data["M_1"] == 2 and data["M_2"] == 1
    assert np.allclose(data["offsets"], np.log(sim["expo"]))
    assert "target += weights[n] * poisson_log_lpmf(Y[n] | mu[n]);" in prog.code
    assert "mu += offsets;" in prog.code


def test_glm_functions_where_they_apply(sim):
    expect = {("gaussian", None): "normal_id_glm_lpdf", ("bernoulli", None):
              "bernoulli_logit_glm_lpmf", ("poisson", None): "poisson_log_glm_lpmf",
              ("negbinomial", None): "neg_binomial_2_log_glm_lpmf",
              ("binomial", None): "binomial_logit_lpmf(Y | trials, mu)",
              ("binomial", "probit"): "binomial_lpmf(Y | trials, Phi(mu))",
              ("poisson", "sqrt"): "poisson_lpmf(Y | square(mu))",
              ("Gamma", None): "gamma_lpdf(Y | shape, shape * mu)",
              ("Gamma", "log"): "gamma_lpdf(Y | shape, shape * exp(-mu))",
              ("negbinomial", "identity"): "neg_binomial_2_lpmf(Y | mu, phi)"}
    for (fam, link), call in expect.items():
        code = joint_stancode(_design(sim, "x + (1 | g)", fam, link), annotate=False)
        assert call in code, (fam, link)
    weighted = joint_stancode(_design(sim, "x + (1 | g)", "gaussian", weights="w"))
    assert "_glm_" not in weighted
    assert "target += weights[n] * normal_lpdf(Y[n] | mu[n], sigma);" in weighted


VARIANTS = [
    ("gaussian", None, "x + (1 | g)"),
    ("gaussian", None, "1 + (1 | g)"),
    ("gaussian", None, "0 + x + (x | g)"),
    ("gaussian", "log", "x + (x || g)"),
    ("gaussian", "inverse", "x + (1 | g) + (1 | h)"),
    ("binomial", None, "x + (1 | g/h)"),
    ("binomial", "cloglog", "x + (1 | g)"),
    ("binomial", "log", "x + (1 | g)"),
    ("bernoulli", None, "x + (x | g)"),
    ("bernoulli", "probit", "x + (1 | g)"),
    ("poisson", None, "x + offset(log(expo)) + (1 | g)"),
    ("poisson", "identity", "x + (1 | g)"),
    ("negbinomial", None, "x + (1 | g) + (1 | h)"),
    ("negbinomial", "sqrt", "x + (1 | g)"),
    ("Gamma", None, "x + (1 | g)"),
    ("Gamma", "identity", "x + (1 | g)"),
    ("gaussian", None, "x"),
]


@pytest.mark.parametrize("family,link,rhs", VARIANTS)
@pytest.mark.parametrize("weights", [None, "w"])
def test_every_variant_passes_stanc(sim, tmp_path, family, link, rhs, weights):
    d = _design(sim, rhs, family, link, weights)
    _stanc(joint_stancode(d), tmp_path)
    if d.terms:
        _stanc(joint_stancode(d, centered=True), tmp_path, "centred")


def test_centred_terms(sim, tmp_path):
    d = _design(sim, "x + (1 + x | g) + (1 | h)")
    code = joint_stancode(d, centered=["g"], annotate=False)
    assert "matrix[N_1, M_1] r_1;" in code and "z_1" not in code
    assert "r_1[j] ~ multi_normal_cholesky(rep_row_vector(0, M_1), L_Sigma);" in code
    assert "to_vector(z_2) ~ std_normal();" in code
    with pytest.raises(BayesmixError, match="no grouping factor 'school'.*'g', 'h'"):
        joint_program(d, centered="school")


# -- priors ------------------------------------------------------------------------

def test_prior_parsing_and_errors():
    p = prior("normal(5, 0.001)", cls="b", coef="Days")
    assert p.dist == "normal" and p.args == (5.0, 0.001) and p.stan_call() == "normal(5, 0.001)"
    assert prior("lkj(2)", cls="cor").stan_call() == "lkj_corr_cholesky(2)"
    assert prior("exponential(1)", cls="sd", group="Subject").group == "Subject"
    with pytest.raises(PriorError, match="unknown prior distribution 'norml'"):
        prior("norml(0, 1)", cls="b")
    with pytest.raises(PriorError, match="takes 2 arguments"):
        prior("normal(0)", cls="b")
    with pytest.raises(PriorError, match="must be positive"):
        prior("normal(0, -1)", cls="b")
    with pytest.raises(PriorError, match="not a number"):
        prior("normal(0, a)", cls="b")
    with pytest.raises(PriorError, match="cannot read"):
        prior("normal(0, 1", cls="b")
    with pytest.raises(PriorError, match="unknown prior class 'beta'.*Intercept, b, sd"):
        prior("normal(0, 1)", cls="beta")
    with pytest.raises(PriorError, match="positive support"):
        prior("exponential(1)", cls="b")
    with pytest.raises(PriorError, match="LKJ"):
        prior("normal(0, 1)", cls="cor")
    with pytest.raises(PriorError, match="takes no coef"):
        prior("normal(0, 1)", cls="sigma", coef="x")


def test_priors_validated_against_the_model():
    d = build_design("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    with pytest.raises(PriorError, match="no population-level coefficient 'days'.*'Days'"):
        joint_program(d, [prior("normal(0, 1)", cls="b", coef="days")])
    with pytest.raises(PriorError, match="cls='Intercept'"):
        joint_program(d, [prior("normal(0, 1)", cls="b", coef="(Intercept)")])
    with pytest.raises(PriorError, match="no grouping factor 'subject'.*'Subject'"):
        joint_program(d, [prior("exponential(1)", cls="sd", group="subject")])
    with pytest.raises(PriorError, match="no group-level coefficient 'x'.*'\\(Intercept\\)', "
                                         "'Days'"):
        joint_program(d, [prior("exponential(1)", cls="sd", coef="x")])
    with pytest.raises(PriorError, match="no parameters of class 'phi'.*Intercept, b, sd, "
                                         "cor, sigma"):
        joint_program(d, [prior("gamma(2, 1)", cls="phi")])
    with pytest.raises(PriorError, match="duplicated"):
        joint_program(d, [prior("normal(0, 1)", cls="b"), prior("normal(0, 2)", cls="b")])
    with pytest.raises(PriorError, match="made with bayesmix.priors.prior"):
        joint_program(d, ["normal(0, 1)"])


def test_user_priors_change_code_defaults_are_data():
    d = build_design("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    base = joint_stancode(d, annotate=False)
    tight = joint_stancode(d, [prior("normal(5, 0.001)", cls="b", coef="Days")],
                           annotate=False)
    assert base != tight
    assert "b ~ normal(5, 0.001);" in tight and "prior_b_scale" not in tight
    code = joint_stancode(d, [prior("lkj(2)", cls="cor"),
                              prior("exponential(1)", cls="sd", group="Subject"),
                              prior("normal(0, 10)", cls="sd", coef="Days"),
                              prior("normal(250, 50)", cls="Intercept"),
                              prior("exponential(0.1)", cls="sigma")], annotate=False)
    assert "L_1 ~ lkj_corr_cholesky(2);" in code
    assert "sd_1[1] ~ exponential(1);" in code and "sd_1[2] ~ normal(0, 10);" in code
    assert "Intercept ~ normal(250, 50);" in code and "sigma ~ exponential(0.1);" in code
    assert "prior_sd_scale" not in code and "prior_Intercept_loc" not in code
    lmm = build_design("extro ~ open + agree + social + (1 | school/class)", load("lmmdata"))
    code = joint_stancode(lmm, [prior("normal(0, 1)", cls="b", coef="agree"),
                                prior("flat", cls="b", coef="social")], annotate=False)
    assert "b[1] ~ normal(0, prior_b_scale[1]);" in code
    assert "b[2] ~ normal(0, 1);" in code and "// b[3]: flat (improper) prior" in code


def test_default_priors_scaled_to_data():
    d = build_design("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    y = d.y
    mad = 1.4826 * np.median(np.abs(y - np.median(y)))
    data = joint_stan_data(d)
    assert data["prior_Intercept_loc"] == pytest.approx(np.median(y))
    assert data["prior_Intercept_scale"] == pytest.approx(mad)
    assert data["prior_sd_scale"] == data["prior_sigma_scale"] == pytest.approx(mad)
    assert data["prior_b_scale"][0] == pytest.approx(2.5 * y.std(ddof=1) / d.X[:, 1].std(ddof=1))
    tab = prior_summary(d, [prior("normal(5, 0.001)", cls="b", coef="Days")])
    assert list(tab.columns) == ["prior", "class", "coef", "group", "source"]
    assert list(tab["class"]) == ["Intercept", "b", "sd", "sd", "cor", "sigma"]
    assert tab.loc[1, "prior"] == "normal(5, 0.001)" and tab.loc[1, "source"] == "user"
    assert tab.loc[2, "prior"].startswith("student_t(3, 0, 59.")
    assert set(tab.loc[2:, "source"]) == {"default"}
    cbpp = build_design("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                        load("cbpp"), family="binomial")
    tab = prior_summary(cbpp)
    assert tab.loc[0, "prior"].startswith("student_t(3, ") and tab.loc[0, "prior"].endswith(
        ", 2.5)")
    assert list(tab["class"]) == ["Intercept", "b", "b", "b", "sd"]


# -- every family's program compiles and samples ----------------------------------

PROGRAMS = [
    ("gaussian intercept-only", "Reaction ~ 1 + (1 | Subject)", "sleepstudy", "gaussian", None),
    ("correlated slopes", "Reaction ~ Days + (Days | Subject)", "sleepstudy", "gaussian", None),
    ("crossed", "diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "gaussian", None),
    ("nested", "strength ~ 1 + (1 | batch/cask)", "Pastes", "gaussian", None),
    ("no intercept", "Reaction ~ 0 + Days + (Days | Subject)", "sleepstudy", "gaussian", None),
    ("binomial cbind", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp",
     "binomial", None),
    ("bernoulli", "ybern ~ x + (1 | g)", None, "bernoulli", None),
    ("poisson", "ycount ~ x + (1 | g)", None, "poisson", None),
    ("negbinomial", "ynb ~ x + (1 | g)", None, "negbinomial", None),
    ("Gamma", "yinv ~ x + (1 | g)", None, "Gamma", None),
]


@pytest.mark.slow
@pytest.mark.parametrize("label,formula,dataset,family,link", PROGRAMS,
                         ids=[p[0] for p in PROGRAMS])
def test_program_compiles_and_samples(sim, label, formula, dataset, family, link):
    from bayesmix.bayes import fit_nuts
    data = load(dataset) if dataset else sim
    d = build_design(formula, data, family=get_family(family, link))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 60 draws: the diagnostics will complain
        fit = fit_nuts(d, chains=2, iter_warmup=60, iter_sampling=30, seed=3,
                       show_progress=False)
    post = fit.to_arviz().posterior
    b = fit.named_draws().posterior["b"]
    assert b.shape == (2, 30, d.p) and np.all(np.isfinite(b))
    for name in ("Intercept" if n == "(Intercept)" else n for n in d.X_names):
        assert post[name].shape == (2, 30)
    for t in d.terms:
        for c in t.coef_names:
            r = post[f"{'1' if c == '(Intercept)' else c}|{t.group}"]
            assert r.dims == ("chain", "draw", f"{t.group}_level") and r.shape[2] == t.n_levels
    yrep = fit.to_arviz().posterior_predictive[list(fit.to_arviz().observed_data)[0]]
    assert yrep.shape == (2, 30, d.n)
