"""The two shapes of the distributional Laplace system (stan/dist_laplace.stan, dml_solve, and
its numpy mirror): block diagonal when every group-level term has one grouping factor, dense
otherwise. References: glmmTMB 1.1.5 (tests/reference/families/dist_structure.R and .json) on
a zero-inflated Poisson model with a correlated slope and a zi intercept of one factor (three
columns of Z per level: the blocked path) and one with crossed factors and a zi term on a
factor of its own (the dense path); and two more distributional parameters with formulas of
their own, against glmmTMB too: beta's precision (`phi = ~ x`, glmmTMB's dispformula) and the
hurdle probability (`hu = ~ x + (1 | g)`, glmmTMB's ziformula with truncated_poisson).

Tolerances as tests/test_dist_ml.py (issue #17's bar): logLik within 1e-3, estimates and SDs
within 1e-3 relative or 1e-4 absolute, standard errors within 0.1% (both from the Hessian of
the same Laplace log likelihood). The two paths of the numpy mirror agree to 1e-9 on the same
problem (the same matrix factored per level or whole).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmix import bf
from bayesmix.design.dist import build_dist_design
from bayesmix.dist import laplace as dl
from bayesmix.dist import ml
from bayesmix.families import get_family

ROOT = Path(__file__).parents[1]
REF = json.loads((ROOT / "tests/reference/families/dist_structure.json").read_text())["cases"]


def _design(name):
    case = REF[name]
    forms = dict(case["formula"])
    return build_dist_design(bf(forms.pop("formula"), **forms), pd.read_csv(ROOT / case["data"]),
                             get_family(case["family"], fittable=False))


def _close(ours, ref, what):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    assert np.all(np.abs(ours - ref) <= np.maximum(1e-3 * np.abs(ref), 1e-4)), \
        f"{what}: {ours} vs {ref}"


def test_layouts_are_detected():
    assert dl._block_layout(dl.DistProblem.from_design(_design("zip_slopes"))) is not None
    assert dl._block_layout(dl.DistProblem.from_design(_design("zip_crossed"))) is None


def test_blocked_and_dense_mirror_agree(monkeypatch):
    prob = dl.DistProblem.from_design(_design("zip_slopes"))
    rng = np.random.default_rng(3)
    x = ml.start_values(prob) + 0.05 * rng.normal(size=prob.n_params)
    blocked = dl.laplace(prob, x)
    monkeypatch.setattr(dl, "_block_layout", lambda prob: None)
    dense = dl.laplace(prob, x)
    assert blocked.loglik == pytest.approx(dense.loglik, abs=1e-9)
    np.testing.assert_allclose(blocked.u, dense.u, atol=1e-8)


@pytest.fixture(scope="module")
def fits():
    return {name: ml.fit_dist_ml(_design(name), engine="bundled") for name in REF}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REF))
def test_fit_matches_glmmtmb(fits, name):
    fit, case = fits[name], REF[name]
    assert fit.converged
    assert fit.loglik() == pytest.approx(case["logLik"], abs=1e-3)
    assert fit.df() == case["df"]
    for dpar, fe in case["fixef"].items():
        assert list(fit.fixef(dpar).index) == fe["names"]
        _close(fit.fixef(dpar), fe["estimate"], f"{name} {dpar}")
        np.testing.assert_allclose(fit.coef_table(dpar)["Std. Error"], fe["se"], rtol=1e-3,
                                   err_msg=f"{name} {dpar} SE")
    vc = fit.varcorr()
    for dpar, groups in case["varcorr"].items():
        for grp, v in groups.items():
            _close(vc[dpar][grp]["sd"], v["sd"], f"{name} {dpar} {grp} sd")
            if v.get("cor"):
                _close(vc[dpar][grp]["cor"].to_numpy(), v["cor"], f"{name} {dpar} {grp} cor")
