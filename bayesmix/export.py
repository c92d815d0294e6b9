"""Reproducible Stan bundles: export a fit, load it back, rerun it.

A bundle folder holds the self-contained program (`model.stan`, includes
inlined), `data.json`, `inits.json`, the Stan CSV outputs, `run.json`
(method, arguments, seeds, engine, Stan and bayesmix versions, compiler
flags, formula, family) and `model_data.csv` (the rows the model used),
plus a README with the CmdStan and Python commands that reproduce it.
Writing is atomic: the folder appears under its name only when complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .engine.base import EngineInfo, RunResult, write_json
from .errors import BayesmixError

BUNDLE_VERSION = 1


def _fit_classes() -> dict[str, Any]:
    from .results.mixed import MixedFit
    classes = {"lmer": MixedFit}
    try:
        from .bayes import PosteriorFit
        classes["nuts"] = PosteriorFit
    except ImportError:
        pass
    try:
        from .results.glmm import GlmmFit
        classes["glmer"] = GlmmFit
    except ImportError:
        pass
    return classes


def export(fit: Any, path: str | os.PathLike) -> str:
    """Write `fit` as a bundle folder at `path` (which must not exist yet)."""
    from . import __version__
    target = Path(path)
    if target.exists():
        raise BayesmixError(f"export target {str(target)!r} already exists; choose a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        run: RunResult = fit.run
        (tmp / "model.stan").write_text(fit.stan_code)
        write_json(tmp / "data.json", fit.stan_data)
        if fit.inits is not None:
            write_json(tmp / "inits.json", fit.inits)
        outputs = []
        for i, csv in enumerate(run.csv_files):
            name = f"output_{i + 1}.csv" if len(run.csv_files) > 1 else "output.csv"
            shutil.copy2(csv, tmp / name)
            outputs.append(name)
        design = fit.design
        design.data.to_csv(tmp / "model_data.csv", index=False)
        categories = {c: {"levels": [str(v) for v in design.data[c].cat.categories],
                          "ordered": bool(design.data[c].cat.ordered)}
                      for c in design.data.columns
                      if isinstance(design.data[c].dtype, pd.CategoricalDtype)}
        meta = {
            "bundle_version": BUNDLE_VERSION, "kind": fit.kind, "method": run.method,
            "args": run.args, "engine": run.engine.to_dict(), "bayesmix_version": __version__,
            "formula": design.formula.text, "family": design.family.name,
            "link": design.family.link, "categories": categories, "outputs": outputs,
            "return_code": run.return_code, "elapsed": run.elapsed,
            "inits": "inits.json" if fit.inits is not None else None,
            "fit": fit.export_meta(),
        }
        (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        (tmp / "README.md").write_text(_readme(meta, target))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _read(path: str | os.PathLike) -> tuple[Path, dict, Any]:
    from .design import build_design
    folder = Path(path)
    if not (folder / "run.json").exists():
        raise BayesmixError(f"{str(folder)!r} is not a bayesmix export (no run.json)")
    meta = json.loads((folder / "run.json").read_text())
    data = pd.read_csv(folder / "model_data.csv")
    for col, cat in meta["categories"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=cat["levels"],
                                   ordered=cat["ordered"])
    design = build_design(meta["formula"], data, family=_family(meta))
    return folder, meta, design


def _family(meta: dict):
    from .families import get_family
    return get_family(meta["family"], meta["link"])


def load(path: str | os.PathLike) -> Any:
    """Restore the fit object of a bundle from its CSV outputs, without refitting."""
    folder, meta, design = _read(path)
    e = meta["engine"]
    run = RunResult(meta["method"], tuple(str(folder / o) for o in meta["outputs"]),
                    meta["args"], EngineInfo(e["name"], e["stan_version"], e["compiler"],
                                             tuple(e["flags"])),
                    "", meta["return_code"], meta["elapsed"])
    data = json.loads((folder / "data.json").read_text())
    return _fit_classes()[meta["kind"]].from_export(design, meta["fit"], run, data)


def rerun(path: str | os.PathLike, output_dir: str | None = None) -> Any:
    """Refit from a bundle: the same program, data, inits, arguments and seed.

    On the same engine this reproduces the original draws exactly."""
    from .engine import BundledModel
    folder, meta, design = _read(path)
    if meta["engine"]["name"] != "bundled":
        raise BayesmixError("rerun() repeats bundled-engine runs; for CmdStan use the "
                            "command in the bundle's README")
    code = (folder / "model.stan").read_text()
    data = json.loads((folder / "data.json").read_text())
    inits = json.loads((folder / "inits.json").read_text()) if meta["inits"] else None
    model = BundledModel(code, _program_name(meta))
    run = model.rerun(meta["method"], data, meta["args"], inits, output_dir)
    return _fit_classes()[meta["kind"]].from_export(design, meta["fit"], run, data)


def _program_name(meta: dict) -> str:
    return {"lmer": "lmer", "glmer": "glmer"}.get(meta["kind"], "model")


def _cmdstan_args(meta: dict) -> str:
    a = meta["args"]
    if meta["method"] == "sample":
        return (f"sample num_samples={a['num_samples']} num_warmup={a['num_warmup']} "
                f"thin={a['thin']} adapt delta={a['adapt_delta']} algorithm=hmc engine=nuts "
                f"max_depth={a['max_depth']} metric={a['metric']} num_chains={a['chains']}")
    if meta["method"] == "optimize":
        tol = " ".join(f"{k}={a[k]}" for k in ("tol_obj", "tol_rel_obj", "tol_grad",
                                                 "tol_rel_grad", "tol_param") if a.get(k))
        return (f"optimize algorithm={a['algorithm']} jacobian={a['jacobian']} "
                f"iter={a['iter']} {tol}").strip()
    return meta["method"]


def _readme(meta: dict, target: Path) -> str:
    init = " init=inits.json" if meta["inits"] else ""
    sig = " sig_figs=17" if meta["method"] == "optimize" else ""
    return f"""# bayesmix export: {meta['formula']}

Family {meta['family']}({meta['link']}), {meta['kind']} fit by Stan `{meta['method']}`;
engine {meta['engine']['name']} (Stan {meta['engine']['stan_version']}), bayesmix
{meta['bayesmix_version']}, seed {meta['args'].get('seed')}.

Files: `model.stan` (self-contained program), `data.json`, {'`inits.json`, ' if init else ''}\
the Stan CSV outputs ({', '.join(meta['outputs'])}), `run.json` (every argument, seeds,
versions, compiler flags) and `model_data.csv` (the rows the model used).

## Rerun with CmdStan

```bash
make path/to/model   # in a CmdStan folder, after copying model.stan there as model.stan
./model {_cmdstan_args(meta)} data file=data.json{init} random seed={meta['args'].get('seed')} \\
    output file=output.csv{sig}
```

## Rerun or reload with Python

```python
import bayesmix
fit = bayesmix.load("{target}")    # the saved fit, no refitting
again = bayesmix.rerun("{target}")  # refit: identical draws on the bundled engine
```
"""
