"""The notebooks are part of the product: each runs top to bottom, prints no warning, and its
headline numbers are lme4's.

Every cell runs even after a failure (allow_errors), so a failing test names each broken cell
with its first line and the error, instead of nbclient's bare traceback. A probe cell appended
to the notebook reports the fits the notebook built, which are compared with lme4 1.1-31
(tests/reference/lme4_refs.json) at the tolerances of test_lmer.py / test_glmer.py.
"""

import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LME4 = json.loads((ROOT / "tests" / "reference" / "lme4_refs.json").read_text())["cases"]
PROBE_TAG = "BAYESMIX_PROBE "

SALAMANDERS = json.loads((ROOT / "tests" / "reference" / "salamanders"
                          / "salamanders_zip.json").read_text())

# per notebook: code printing PROBE_TAG + JSON of what it fitted, and the reference to compare
# (an lme4 case of lme4_refs.json, or "glmmTMB" for salamanders_zip.json)
PROBES = {
    "school_tutorial": ("""
import json as _json
_f = reml["nested"]
print("BAYESMIX_PROBE " + _json.dumps({
    "fixef": _f.fixef().to_dict(), "se": _f.coef_table()["Std. Error"].to_dict(),
    "loglik": float(_f.loglik()), "post_mean": post.fixef()["Estimate"].to_dict()}))
""", "lmmdata_nested_REML"),
    "cbpp_glmm": ("""
import json as _json
print("BAYESMIX_PROBE " + _json.dumps({
    "fixef": ml.fixef().to_dict(), "se": ml.coef_table()["Std. Error"].to_dict(),
    "loglik": float(ml.loglik()), "post_mean": post.fixef()["Estimate"].to_dict()}))
""", "cbpp_binomial"),
    "salamanders_zip": ("""
import json as _json
print("BAYESMIX_PROBE " + _json.dumps({
    "fixef": {d: ml.fixef(d).tolist() for d in ("mu", "zi")},
    "se": {d: ml.coef_table(d)["Std. Error"].tolist() for d in ("mu", "zi")},
    "loglik": float(ml.loglik()),
    "post_mean": {d: post.fixef().loc[[("" if d == "mu" else "zi_") + ("Intercept" if n ==
                  "(Intercept)" else n) for n in ml.fixef(d).index], "Estimate"].tolist()
                  for d in ("mu", "zi")},
    "post_sd": {d: post.fixef().loc[[("" if d == "mu" else "zi_") + ("Intercept" if n ==
                "(Intercept)" else n) for n in ml.fixef(d).index], "Est.Error"].tolist()
                for d in ("mu", "zi")}}))
""", "glmmTMB"),
}


def _first_line(cell) -> str:
    lines = [ln for ln in cell.source.splitlines() if ln.strip()]
    return lines[0][:80] if lines else "<empty>"


def _problems(nb) -> list[str]:
    """Errors and stderr text (warnings land there), each with its cell's number and first line."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({_first_line(cell)!r})"
        if not cell.get("execution_count"):
            found.append(f"{where}: did not run")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"{where}: {out['ename']}: {out['evalue']}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"{where}: wrote to stderr: {out['text'].strip()[:300]}")
    return found


def _probe(nb) -> dict:
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", [])
                   if o.get("output_type") == "stream")
    line = next((ln for ln in text.splitlines() if ln.startswith(PROBE_TAG)), None)
    assert line is not None, f"the probe cell printed nothing usable: {text[:300]!r}"
    return json.loads(line[len(PROBE_TAG):])


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BAYESMIX_QUIET", "1")  # build-progress lines are not warnings
    nb = nbformat.read(path, as_version=4)
    probe = PROBES.get(path.stem)  # a notebook without a probe is checked for errors only
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(probe[0]))
    NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    problems = _problems(nb)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    if not probe:
        return

    if probe[1] == "glmmTMB":
        _check_salamanders(_probe(nb))
        return
    got, ref = _probe(nb), LME4[probe[1]]["results"]
    names = list(ref["fixef"])
    assert list(got["fixef"]) == names
    for name in names:
        # REML/Laplace ML through Stan's optimizer: lme4's estimates to 1e-3 relative,
        # logLik to 1e-3 absolute (test_lmer.py, test_glmer.py; cbpp's lme4 default stops short)
        assert got["fixef"][name] == pytest.approx(ref["fixef"][name], rel=1e-3), name
        # the posterior mean of a fixed effect lies within one REML/ML standard error of the
        # estimate: a loose check (2 x 300 draws, priors), which a wrong model fails by far
        assert abs(got["post_mean"][name] - ref["fixef"][name]) < got["se"][name], name
    assert got["loglik"] == pytest.approx(ref["logLik"], abs=1e-3)
    assert all(math.isfinite(v) and v > 0 for v in got["se"].values())


def _check_salamanders(got):
    """The zero-inflated Poisson of notebooks/salamanders_zip.ipynb against glmmTMB 1.1.5
    (tests/reference/salamanders/salamanders.R)."""
    ref = SALAMANDERS
    # Laplace ML: issue #17's bar, logLik within 1e-3, estimates within 1e-3 relative
    assert got["loglik"] == pytest.approx(ref["logLik"], abs=1e-3)
    for d in ("mu", "zi"):
        np.testing.assert_allclose(got["fixef"][d], ref["fixef"][d]["estimate"], rtol=1e-3,
                                   atol=1e-5)
        # glmmTMB's SEs come from the Hessian of the same Laplace likelihood
        np.testing.assert_allclose(got["se"][d], ref["fixef"][d]["se"], rtol=1e-2)
        # the posterior (4 x 1000 draws, brms's weak default priors) centres within 1.5
        # posterior SDs of the ML estimate; the site SD's skewed posterior moves the
        # intercept and the site-level mining effect most (~0.8 SD), a wrong model by far more
        z = np.abs(np.subtract(got["post_mean"][d], ref["fixef"][d]["estimate"]))
        assert np.all(z < 1.5 * np.asarray(got["post_sd"][d])), (d, z)
