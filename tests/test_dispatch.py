"""Model.route, the one dispatch from a method name to the module that owns it, and the coded
reasons a program does not run (no branching on message text). Nothing here compiles or
samples: the routes are compared with the method modules' own functions."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.bayes import marginal, sampling
from bayesmix.datasets import load
from bayesmix.errors import BayesmixError
from bayesmix.glmerfit import glmer_code, glmer_data
from bayesmix.ml import lmer_code, lmer_data

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return load("sleepstudy")


@pytest.fixture(scope="module")
def cbpp():
    return load("cbpp")


def test_routes_lead_to_the_owning_module(sleep, cbpp):
    lmm = bayesmix.Model(SLEEP, sleep)
    assert lmm.route().name == "lmer" and lmm.route("ml").name == "lmer"
    assert lmm.route("nuts").name == "bayes" and lmm.route("nuts").fit is None
    assert bayesmix.Model("Reaction ~ Days", sleep).route().name == "glm"
    glmm = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                          family="binomial")
    assert glmm.route().name == "glmer"
    # the program and data are the method modules' own
    assert lmm.stan_code("reml") == lmer_code()
    ref = lmer_data(lmm.design, reml=True)[0]
    got = lmm.stan_data("REML")
    assert got.keys() == ref.keys()
    assert all(np.array_equal(np.asarray(got[k]), np.asarray(ref[k])) for k in ref)
    assert glmm.stan_code("ml") == glmer_code(glmm.design)
    assert glmm.stan_data("ml").keys() == glmer_data(glmm.design).keys()


def test_route_errors_name_the_choices(sleep):
    lmm = bayesmix.Model(SLEEP, sleep)
    with pytest.raises(BayesmixError, match="unknown method 'bfgs'.*reml, ml, nuts"):
        lmm.stan_code("bfgs")
    with pytest.raises(BayesmixError, match="unknown method 'nuts' for fit"):
        lmm.fit(method="nuts")
    glm = bayesmix.Model("Reaction ~ Days", sleep)
    for call in (glm.stan_code, glm.stan_data):
        with pytest.raises(BayesmixError, match="closed form"):
            call("ml")
    binom = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                           load("cbpp"), family="binomial")
    with pytest.raises(BayesmixError, match="REML is defined for gaussian"):
        binom.stan_code("reml")


def _design(formula, data, **kw):
    return bayesmix.build_design(formula, data, **kw)


def test_marginal_reasons_are_codes(sleep, cbpp):
    assert marginal.marginal_unsupported(_design(SLEEP, sleep)) is None
    cases = {
        marginal.FAMILY_LINK: marginal.marginal_unsupported(_design(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
            family=bayesmix.get_family("binomial"))),
        marginal.NO_RANDOM: marginal.marginal_unsupported(_design("Reaction ~ Days", sleep)),
        marginal.WEIGHTS: marginal.marginal_unsupported(_design(
            SLEEP, sleep, weights=np.ones(len(sleep)))),
        marginal.CENTERED: marginal.marginal_unsupported(_design(SLEEP, sleep), centered=True),
    }
    for code, why in cases.items():
        assert why.code == code and not why.slower_only, why
    # many crossed levels: the dense block is too large; only slower, so "marginal" still runs
    rng = np.random.default_rng(1)
    n = 3000
    df = pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, 1500, n).astype(str),
                       "b": rng.integers(0, 1200, n).astype(str)})
    big = _design("y ~ 1 + (1 | a) + (1 | b)", df)
    why = marginal.marginal_unsupported(big)
    assert why.code == marginal.DENSE_BLOCK and why.slower_only
    assert marginal.choose_program(big, program="marginal") == ("marginal", None)
    assert str(why).startswith("the marginal program's dense block")  # the text is for people


def test_auto_says_why_only_for_gaussian_mixed_models(sleep, cbpp, monkeypatch, caplog):
    """sample_posterior logs why the joint program runs when the marginal one would apply to
    the model's kind (here: prior weights), not for other families (fit_nuts is replaced: no
    sampling)."""
    calls = []
    monkeypatch.setattr(sampling, "fit_nuts", lambda design, priors, program, **kw:
                        calls.append(program) or "joint fit")
    with caplog.at_level(logging.INFO, logger="bayesmix"):
        weighted = _design(SLEEP, sleep, weights=np.ones(len(sleep)))
        assert sampling.sample_posterior(weighted) == "joint fit"
        assert [r.getMessage() for r in caplog.records] == [
            "sampling the joint program: prior weights are not supported by the marginal "
            "program"]
        caplog.clear()
        binom = _design("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                        family=bayesmix.get_family("binomial"))
        sampling.sample_posterior(binom, program="generated")
        assert not caplog.records
    assert calls == ["joint", "generated"]
