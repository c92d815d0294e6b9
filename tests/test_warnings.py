"""Warnings point at the user's line (issue #19): whatever depth inside bayesmix a warning
is raised at, `warnings.warn` gets the stacklevel of the first frame outside the package
(bayesmix.errors.user_stacklevel), so a notebook shows the user's cell, not bayesmix's."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load
from bayesmix.errors import user_stacklevel


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if "bayesmix" not in w.filename or w.filename == __file__]


def _only_here(caught, match):
    hits = [w for w in caught if match in str(w.message)]
    assert hits, f"no warning matching {match!r}: {[str(w.message) for w in caught]}"
    for w in hits:
        assert w.filename == __file__, (str(w.message), w.filename, w.lineno)


def test_rank_deficiency_points_at_the_caller():
    sleep = load("sleepstudy").assign(Days2=lambda d: 2 * d["Days"])
    caught = _caught(lambda: bayesmix.Model("Reaction ~ Days + Days2 + (1 | Subject)", sleep))
    _only_here(caught, "rank deficient")
    caught = _caught(lambda: bayesmix.lm("Reaction ~ Days + Days2", sleep))
    _only_here(caught, "rank deficient")


def test_dropped_rows_point_at_the_caller():
    sleep = load("sleepstudy").copy()
    sleep.loc[3, "Days"] = np.nan
    caught = _caught(lambda: bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep))
    _only_here(caught, "missing values")


def test_glm_separation_points_at_the_caller():
    x = np.arange(20.0)
    data = pd.DataFrame({"x": x, "y": (x > 9.5).astype(int)})
    caught = _caught(lambda: bayesmix.glm("y ~ x", data, family="binomial"))
    _only_here(caught, "numerically 0 or 1")


def test_anova_of_mixed_reml_and_ml_points_at_the_caller():
    sleep = load("sleepstudy")
    a = bayesmix.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    b = bayesmix.lmer("Reaction ~ Days + (Days | Subject)", sleep, REML=False)
    caught = _caught(lambda: bayesmix.anova(a, b, refit=False))
    _only_here(caught, "some models fit with REML = TRUE")


def test_user_stacklevel_counts_frames_inside_the_package():
    # called from here (outside bayesmix), the warning belongs to this frame
    assert user_stacklevel() == 1
    with pytest.warns(UserWarning) as rec:
        warnings.warn("x", stacklevel=user_stacklevel())
    assert rec[0].filename == __file__
