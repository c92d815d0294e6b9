"""Every reference JSON has the R script that writes it, listed in tests/reference/README.md;
the quick scripts are rerun (when R is installed) and must reproduce their JSON exactly.

The slower scripts (lme4_refs.R ~170 s, inference_refs.R ~80 s, bootstrap_refs.R ~70 s,
glmm_refs.R ~50 s) are checked by hand with compare_refs.py; README.md records the result.
"""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference"
JSONS = sorted(p.name for p in REF.glob("*.json"))
QUICK = ["glm_refs", "family_refs"]  # well under a second each


def _compare_refs():
    spec = importlib.util.spec_from_file_location("compare_refs", REF / "compare_refs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", JSONS)
def test_every_reference_json_has_its_script(name):
    script = REF / (Path(name).stem + ".R")
    assert script.exists(), f"{name}: no generator script {script.name}"
    assert name in script.read_text(), f"{script.name} does not name {name}"
    readme = (REF / "README.md").read_text()
    assert f"`{name}`" in readme and script.name in readme, f"README.md does not list {name}"


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")
@pytest.mark.parametrize("stem", QUICK)
def test_quick_scripts_reproduce_their_json(stem, tmp_path):
    if stem + ".json" not in JSONS:
        pytest.skip(f"{stem}.json is not in this tree")
    # run in a copy: the scripts write their JSON in place, relative to the repository root
    shutil.copytree(REF, tmp_path / "tests" / "reference")
    shutil.copytree(ROOT / "bayesmix" / "datasets", tmp_path / "bayesmix" / "datasets")
    proc = subprocess.run(["Rscript", f"tests/reference/{stem}.R"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "there is no package called" in proc.stderr:
        pytest.skip(f"{stem}.R needs an R package that is not installed: {proc.stderr[-200:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cmp = _compare_refs()
    # meta (R and package versions, date) may differ; the numbers may not, beyond rounding
    # in the last of jsonlite's 15 digits or a different BLAS
    out = dict(n=0, abs=(0.0, None), rel=(0.0, None), over=[], other=[], missing=[], tol=1e-10)
    old = json.loads((REF / f"{stem}.json").read_text())
    new = json.loads((tmp_path / "tests" / "reference" / f"{stem}.json").read_text())
    for key in ("meta", "R"):  # family_refs.json keeps R's version at the top
        old.pop(key, None), new.pop(key, None)
    cmp.walk(old, new, "", out, False)
    assert out["n"] > 0
    assert not out["over"] and not out["other"], (out["over"] + out["other"])[:20]
