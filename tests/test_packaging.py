"""The package as users install it: a wheel in a fresh virtual environment.

An editable install reads stan/ from the source tree and hides packaging
mistakes (the first wheels shipped no Stan file at all), so this builds the
wheel, installs it into a new venv outside the tree and fits from there.
Dependencies are borrowed from the test environment through a .pth file so
the check needs no downloads beyond the build backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFS = json.loads((ROOT / "tests/reference/lme4_refs.json").read_text())


def test_every_subpackage_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "bayesmix").rglob("__init__.py")}
    assert found | {"bayesmix._stan"} == listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT),
                           "-w", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{proc.stderr[-3000:]}")
    return next(out.glob("bayesmix-*.whl"))


def test_wheel_holds_the_stan_files_driver_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for stan in (ROOT / "stan").glob("*.stan"):
        assert f"bayesmix/_stan/{stan.name}" in names
    assert "bayesmix/engine/driver.cpp" in names
    for csv in (ROOT / "bayesmix/datasets").glob("*.csv"):
        assert f"bayesmix/datasets/{csv.name}" in names


SCRIPT = """
import json, sys
import bayesmix
from bayesmix.datasets import load
assert "site-packages" in bayesmix.__file__, bayesmix.__file__
fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy")).fit()
post = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy")).sample(
    chains=2, iter_warmup=150, iter_sampling=100, seed=3, diagnostics=False)
print(json.dumps({"file": bayesmix.__file__, "loglik": fit.loglik(),
                  "b_days": float(post.fixef().loc["Days", "Estimate"])}))
"""


def test_wheel_fits_from_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path"
                                "('purelib'))"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # the dependencies of the test environment, but not its (editable) bayesmix
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(wheel)], check=True)
    proc = subprocess.run([str(py), "-c", SCRIPT], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(site))
    ref = REFS["cases"]["sleepstudy_slope_REML"]["results"]
    assert out["loglik"] == pytest.approx(ref["logLik"], abs=1e-6)
    # a short run: the slope's posterior mean within one lme4 SE (1.55) of lme4's 10.467
    assert abs(out["b_days"] - ref["fixef"]["Days"]) < ref["fixef_se"]["Days"]
