"""The Family object against independent references.

* R's ``family()`` functions (linkinv, mu.eta, linkfun, variance, dev.resids) at fixed points:
  tests/reference/family_refs.json, written by tests/reference/family_refs.R (15 significant
  digits, so rel=1e-12).
* scipy.stats log densities (negative binomial in R's size/mu parametrisation, Gamma with shape
  and scale = mu / shape).
* draws against the distributions' mean and variance (simulation truth, 200 000 draws: means
  within 5 standard errors, variances within 3 %).
* the Stan codes against the comments of the Stan programs that read them.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.errors import FamilyError
from bayesmix.families import (FAMILIES, LINKS, METHODS, SUPPORTS, Family, families_for,
                               get_family)

ROOT = Path(__file__).resolve().parents[1]
REFS = json.loads((ROOT / "tests" / "reference" / "family_refs.json").read_text())


@pytest.mark.parametrize("link", sorted(LINKS))
def test_links_match_r(link):
    ref = REFS["links"][link]
    lk = LINKS[link]
    eta = np.array(ref["eta"], float)
    np.testing.assert_allclose(lk.linkinv(eta), ref["linkinv"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(lk.mu_eta(eta), ref["mu_eta"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(lk.linkfun(np.array(ref["mu"], float)), ref["linkfun"],
                               rtol=1e-12, atol=1e-14)


def test_every_link_has_a_reference_and_distinct_code():
    assert set(REFS["links"]) == set(LINKS)
    assert len({lk.code for lk in LINKS.values()}) == len(LINKS)


@pytest.mark.parametrize("name", ["gaussian", "binomial", "bernoulli", "poisson",
                                  "negbinomial", "Gamma"])
def test_variance_and_deviance_residuals_match_r(name):
    ref = REFS["families"]["binomial" if name == "bernoulli" else name]
    fam = get_family(name)
    phi = ref.get("theta", 1.0)
    y, mu, wt = (np.array(ref[k], float) for k in ("y", "mu", "wt"))
    np.testing.assert_allclose(fam.variance(mu, phi), ref["variance"], rtol=1e-12)
    np.testing.assert_allclose(fam.dev_resids(y, mu, wt, phi), ref["dev_resids"],
                               rtol=1e-12, atol=1e-14)


def _scipy_logpdf(name, y, mu, trials, phi):
    if name == "gaussian":
        return stats.norm.logpdf(y, mu, phi)
    if name == "binomial":
        return stats.binom.logpmf(y, trials, mu)
    if name == "bernoulli":
        return stats.bernoulli.logpmf(y, mu)
    if name == "poisson":
        return stats.poisson.logpmf(y, mu)
    if name == "negbinomial":  # R's dnbinom(size = phi, mu = mu)
        return stats.nbinom.logpmf(y, phi, phi / (phi + mu))
    return stats.gamma.logpdf(y, phi, scale=mu / phi)  # Gamma(shape = phi, mean mu)


CASES = {
    "gaussian": (np.array([-2.0, 0.0, 0.4, 3.1]), np.array([-1.0, 0.2, 0.4, 5.0]), 1, 1.7),
    "binomial": (np.array([0.0, 3.0, 7.0, 10.0]), np.array([0.05, 0.3, 0.66, 0.9]),
                 np.array([4.0, 10.0, 7.0, 12.0]), None),
    "bernoulli": (np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.2, 0.5, 0.97, 0.6]), 1, None),
    "poisson": (np.array([0.0, 1.0, 4.0, 25.0]), np.array([0.3, 1.0, 6.5, 20.0]), 1, None),
    "negbinomial": (np.array([0.0, 1.0, 4.0, 25.0]), np.array([0.3, 1.0, 6.5, 20.0]), 1, 2.3),
    "Gamma": (np.array([0.05, 1.0, 2.5, 30.0]), np.array([0.4, 1.0, 6.5, 20.0]), 1, 3.4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_density_matches_scipy(name):
    y, mu, trials, phi = CASES[name]
    fam = get_family(name)
    got = fam.log_density(y, mu, trials, phi)
    np.testing.assert_allclose(got, _scipy_logpdf(name, y, mu, trials, phi), rtol=1e-12)


def test_log_density_needs_the_family_parameter():
    with pytest.raises(FamilyError, match="phi"):
        get_family("negbinomial").log_density([1.0], [2.0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_draws_match_the_moments(name):
    _, mu, trials, phi = CASES[name]
    mu = np.abs(mu) + 0.1 if name in ("poisson", "negbinomial", "Gamma") else mu
    trials = np.broadcast_to(np.asarray(trials, float), mu.shape)
    n = 200_000
    draws = get_family(name).draw(np.random.default_rng(11), np.broadcast_to(mu, (n, len(mu))),
                                  trials, phi)
    mean = {"binomial": trials * mu}.get(name, mu)
    var = {"gaussian": lambda: np.full_like(mu, phi ** 2),
           "binomial": lambda: trials * mu * (1 - mu), "bernoulli": lambda: mu * (1 - mu),
           "poisson": lambda: mu, "negbinomial": lambda: mu + mu ** 2 / phi,
           "Gamma": lambda: mu ** 2 / phi}[name]()
    se = np.sqrt(var / n)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * se)
    np.testing.assert_allclose(draws.var(axis=0), var, rtol=0.03)


def _codes_in(text: str) -> dict[str, int]:
    return {name: int(code) for code, name in re.findall(r"(\d) ([a-z]+)", text)}


def test_stan_codes_match_the_programs():
    joint = (ROOT / "stan" / "glmm_joint.stan").read_text()
    fam_line = re.search(r"// Family codes: (.*?)\n// Link", joint, re.S).group(1)
    fam_codes = _codes_in(fam_line.replace("negative binomial", "negbinomial")
                          .replace("Gamma", "gamma"))
    link_codes = _codes_in(re.search(r"// Link codes \(as glmer.stan\): (.*?)\n// Prior",
                                     joint, re.S).group(1))
    glmer = (ROOT / "stan" / "glmer.stan").read_text()
    glmer_fam = re.search(r"family;\s*// (.*)", glmer).group(1)
    glmer_codes = _codes_in(glmer_fam.replace("Gamma", "gamma"))
    glmer_codes["bernoulli"] = glmer_codes["binomial"]  # "1 binomial/bernoulli"
    for name, spec in FAMILIES.items():
        assert spec.joint_code == fam_codes[name.lower()], name
        if spec.glmer_code is not None:
            assert spec.glmer_code == glmer_codes[name.lower()], name
        for link in spec.links:
            assert Family(name, link).stan_codes("joint") == {
                "family": spec.joint_code, "link": link_codes[link]}
    assert {lk.name: lk.code for lk in LINKS.values()} == link_codes


def test_supported_methods():
    assert get_family("gaussian").supports("lmer")
    assert not get_family("gaussian", "log").supports("lmer")
    assert get_family("gaussian").supports("nuts_marginal")
    assert not get_family("poisson").supports("nuts_marginal")
    assert not get_family("negbinomial").supports("glm")
    assert get_family("negbinomial").supports("glmer")
    assert not get_family("gaussian").supports("glmer")
    assert all(get_family(f).supports("nuts_joint") and get_family(f).supports("laplace")
               for f in FAMILIES)
    assert "gaussian" not in families_for("glmer")
    assert families_for("lmer") == {"gaussian": ("identity",)}
    with pytest.raises(FamilyError, match="choose one of"):
        get_family("poisson").supports("em")
    assert set(METHODS) >= set().union(*(s.methods for s in FAMILIES.values()))
    assert {s.support for s in FAMILIES.values()} <= set(SUPPORTS)


def test_family_names_and_errors():
    assert bm.Family is Family and bm.get_family is get_family
    assert get_family("NB") == Family("negbinomial", "log")
    assert str(get_family("gamma", "log")) == "Gamma(log)"
    assert get_family("binomial").dispersion is None
    assert get_family("Gamma").dispersion == "shape"
    with pytest.raises(FamilyError, match="choose one of: logit"):
        get_family("binomial", "sqrt")
    with pytest.raises(FamilyError, match="unknown family 'tweedie'"):
        get_family("tweedie")
    with pytest.raises(FamilyError, match="no glmer program code"):
        get_family("gaussian").stan_codes("glmer")


@pytest.mark.parametrize("name,link", [(f, lk) for f, links in families_for("glmer").items()
                                       for lk in links])
def test_laplace_mirror_log_density(name, link):
    """glmer's per-observation terms (obs_terms: the link-specific, eta-scale numpy mirror of
    glmm_functions.stan) give the same log density as the family's, at valid means."""
    from bayesmix.lmm.laplace import obs_terms
    y, mu, trials, phi = CASES[name]
    if name in ("poisson", "negbinomial", "Gamma"):
        mu = mu + 0.1
    if link == "log" and name in ("binomial", "bernoulli"):
        mu = np.minimum(mu, 0.9)
    fam = get_family(name, link)
    eta = fam.linkfun(mu)
    trials = np.broadcast_to(np.asarray(trials, float), mu.shape)
    lp = obs_terms(name, link, eta, y, trials, 1.0 if phi is None else phi)[0]
    np.testing.assert_allclose(lp, fam.log_density(y, mu, trials, phi), rtol=1e-10)


def test_stan_inverse_links_match_the_generic_program():
    """Each link's Stan text (the generated program's) is the generic program's joint_mean."""
    joint = (ROOT / "stan" / "glmm_joint.stan").read_text()
    body = re.search(r"vector joint_mean\(vector mu, int link\) \{(.*?)\n  \}", joint, re.S).group(1)
    branches = {int(c): expr for c, expr in re.findall(r"if \(link == (\d)\) return (.*?);", body)}
    branches[7] = re.search(r"\n\s*return (.*?);\s*$", body).group(1)  # the last, unconditional
    assert {lk.code: lk.stan_inverse.format(x="mu") for lk in LINKS.values()} == branches
