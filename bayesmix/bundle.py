"""Reproducible Stan bundles: export a fit, load it back, rerun it.

A bundle folder holds the self-contained program (`model.stan`, includes
inlined), `data.json`, `inits.json`, the Stan CSV outputs, `run.json`
(method, arguments, seeds, engine, Stan and bayesmix versions, compiler
flags, formula, family) and `model_data.csv` (the rows the model used),
plus a README with the CmdStan and Python commands that reproduce it.
Writing is atomic: the folder appears under its name only when complete.

Distributional fits (kinds "dist_ml" and "dist_nuts", bayesmix.dist) record their formula
as data: the main formula, each distributional parameter's formula ("dpars": [name,
formula] pairs in bf()'s order), every predictor's link and the response's categories
(cumulative). On load the formulas pass the allow-list again (bayesmix.formula) and
`build_dist_design` rebuilds the design from the saved rows."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .engine.base import EngineInfo, RunResult, write_json
from .engine.stanfiles import user_header
from .errors import BayesmixError
from .priors import PriorError
from .registry import EXPORT, provide, restorer
from .version import __version__

BUNDLE_VERSION = 1
CLOSED_FORM = ("lm", "glm")  # fit kinds without a Stan run: restored by refitting
DIST_KINDS = ("dist_ml", "dist_nuts")  # distributional fits: their design is a DistDesign
logger = logging.getLogger("bayesmix")


WEIGHTS_COLUMN = "(weights)"  # R's model.frame name: cannot clash with a formula's column


def export(fit: Any, path: str | os.PathLike) -> str:
    """Write `fit` as a bundle folder at `path` (which must not exist yet)."""
    target = Path(path)
    if target.exists():
        raise BayesmixError(f"export target {str(target)!r} already exists; choose a new folder")
    design = fit.design
    if design.transforms:
        raise BayesmixError("this fit's formula uses the caller's own functions (transforms="
                            f"{sorted(design.transforms)}); a bundle holds data, not code, so it "
                            "cannot carry them: export a fit whose formula uses the built-in "
                            "transforms only")
    weights = getattr(design, "weights", None)  # a DistDesign has none
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        run: RunResult | None = getattr(fit, "run", None)  # None: lm/glm (closed form)
        outputs = []
        if run is not None:
            (tmp / "model.stan").write_text(fit.stan_code)
            header = user_header(fit.stan_code)
            if header is not None:  # for CmdStan (bayesmix compiles its own copy)
                shutil.copy2(header, tmp / USER_HEADER)
            write_json(tmp / "data.json", fit.stan_data)
            if fit.inits is not None:
                write_json(tmp / "inits.json", fit.inits)
            for i, csv in enumerate(run.csv_files):
                name = f"output_{i + 1}.csv" if len(run.csv_files) > 1 else "output.csv"
                shutil.copy2(csv, tmp / name)
                outputs.append(name)
            for name, src in getattr(fit, "export_files", dict)().items():
                shutil.copy2(src, tmp / name)  # e.g. a Laplace fit's mode.csv
        rows = design.data.copy()
        if weights is not None:
            rows[WEIGHTS_COLUMN] = weights
        rows.to_csv(tmp / "model_data.csv", index=False)
        categories = {c: {"levels": [str(v) for v in design.data[c].cat.categories],
                          "ordered": bool(design.data[c].cat.ordered)}
                      for c in design.data.columns
                      if isinstance(design.data[c].dtype, pd.CategoricalDtype)}
        meta = {
            "bundle_version": BUNDLE_VERSION, "kind": fit.kind,
            "method": run.method if run else None, "args": run.args if run else {},
            "engine": run.engine.to_dict() if run else None, "bayesmix_version": __version__,
            **_formula_meta(design), "family": design.family.name,
            "link": design.family.link, "categories": categories,
            "weights": WEIGHTS_COLUMN if weights is not None else None,
            "outputs": outputs, "return_code": run.return_code if run else 0,
            "elapsed": run.elapsed if run else 0.0,
            "inits": "inits.json" if run is not None and fit.inits is not None else None,
            "user_header": USER_HEADER if (tmp / USER_HEADER).exists() else None,
            "fit": fit.export_meta(),
        }
        if hasattr(fit, "export_runs"):  # a Laplace fit's optimize run ("mode")
            meta["mode"] = fit.export_runs()
        (tmp / "README.md").write_text(_readme(meta, target) if run else _readme_closed(meta, target))
        meta["files"] = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
        meta["checksum"] = _meta_checksum(meta)
        (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


def _formula_meta(design: Any) -> dict:
    """run.json's formula entries: the formula text; for a distributional design also the
    parameters' formulas, every predictor's link and the response's categories."""
    from .design.dist import DistDesign
    if not isinstance(design, DistDesign):
        return {"formula": design.formula.text}
    return {"formula": design.formula.formula,
            "dpars": [[name, text] for name, text in design.formula.dpars],
            "links": {p.dpar: p.link for p in design.predictors},
            "response_categories": list(design.categories)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _meta_checksum(meta: dict) -> str:
    """run.json's own checksum: over its content without this field."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_bundle(folder: Path, meta: dict) -> None:
    """Refuse a bundle whose files differ from what its export recorded."""
    if "files" not in meta or "checksum" not in meta:
        raise BayesmixError(f"{str(folder)!r} records no checksums (an old or hand-made "
                            "bundle); load it with verify=False if you trust it")
    if meta["checksum"] != _meta_checksum(meta):
        raise BayesmixError(f"run.json in {str(folder)!r} was changed after export; "
                            "load it with verify=False if the change was deliberate")
    present = {f.name for f in folder.iterdir() if f.name != "run.json"}
    for name, digest in meta["files"].items():
        if name not in present:
            raise BayesmixError(f"bundle file {name!r} is missing from {str(folder)!r}")
        if _sha256(folder / name) != digest:
            raise BayesmixError(f"bundle file {name!r} in {str(folder)!r} does not match its "
                                "checksum in run.json (changed after export); load it with "
                                "verify=False if the change was deliberate")


def _json_default(v: Any) -> Any:
    if hasattr(v, "tolist"):  # numpy arrays and scalars (an array's .item() needs size 1)
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _read(path: str | os.PathLike, verify: bool = True,
          transforms: dict | None = None) -> tuple[Path, dict, Any]:
    """A bundle's folder, run.json and rebuilt design. Nothing in a bundle is
    run as code: its formula passes the same checks as a user's (see
    bayesmix.formula), and functions come only from the caller."""
    from .design import build_design
    folder = Path(path)
    if not (folder / "run.json").exists():
        raise BayesmixError(f"{str(folder)!r} is not a bayesmix export (no run.json)")
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BayesmixError(f"run.json in {str(folder)!r} is not valid JSON: {exc}") from None
    if verify:
        verify_bundle(folder, meta)
    data = pd.read_csv(folder / "model_data.csv")
    for col, cat in meta["categories"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=cat["levels"],
                                   ordered=cat["ordered"])
    weights = None
    if meta.get("weights"):
        weights = data.pop(meta["weights"]).to_numpy(dtype=float)
    if meta.get("kind") in DIST_KINDS:
        return folder, meta, _dist_design(folder, meta, data, transforms)
    design = build_design(meta["formula"], data, family=_family(meta), weights=weights,
                          transforms=transforms)
    return folder, meta, design


def _dist_design(folder: Path, meta: dict, data: pd.DataFrame, transforms: dict | None):
    """A distributional bundle's DistDesign. Its formulas are data: every one passes the
    formula allow-list (bf()'s `validate`) before `build_dist_design` sees it, and a
    parameter the family lacks, a link or a response category other than the export's is
    refused."""
    from .design.dist import build_dist_design
    from .formula.distributional import DistributionalFormula, validate
    where = f"run.json in {str(folder)!r}"
    pairs = meta.get("dpars", [])
    if not isinstance(meta.get("formula"), str):
        raise BayesmixError(f"{where}: the formula must be a string")
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
            for p in pairs):
        raise BayesmixError(f"{where}: 'dpars' must be a list of [name, formula] pairs of "
                            "strings")
    formula = validate(DistributionalFormula(meta["formula"], tuple(map(tuple, pairs))),
                       transforms)
    design = build_dist_design(formula, data, family=_family(meta), transforms=transforms)
    links = {p.dpar: p.link for p in design.predictors}
    if meta.get("links", links) != links:
        raise BayesmixError(f"{where}: the links {meta.get('links')} are not the family's "
                            f"({links}); this bayesmix cannot rebuild the bundle's model")
    cats = meta.get("response_categories", list(design.categories))
    if cats != list(design.categories):
        raise BayesmixError(f"{where}: the response's categories {cats} differ from those "
                            f"of the saved rows ({list(design.categories)})")
    return design


def _family(meta: dict):
    from .families import get_family
    return get_family(meta["family"], meta["link"])


def load(path: str | os.PathLike, verify: bool = True, transforms: dict | None = None) -> Any:
    """Restore the fit object of a bundle from its CSV outputs, without refitting
    (lm/glm fits, which have no Stan run, are refitted in closed form).

    verify: check every file against the checksums recorded at export (a changed
    file is refused, naming it); False loads a deliberately edited bundle.
    transforms: the caller's own formula functions, if the formula needs any
    (a bundle never supplies code)."""
    folder, meta, design = _read(path, verify, transforms)
    restore = restorer(meta["kind"])
    if meta["kind"] in CLOSED_FORM:
        return restore(design, meta["fit"], None, None)
    e = meta["engine"]
    run = RunResult(meta["method"], tuple(str(folder / o) for o in meta["outputs"]),
                    meta["args"], EngineInfo(e["name"], e["stan_version"], e["compiler"],
                                             tuple(e["flags"])),
                    "", meta["return_code"], meta["elapsed"])
    data = json.loads((folder / "data.json").read_text())
    extra = {"mode_run": _mode_run(folder, meta)} if meta.get("mode") else {}
    if meta.get("inits"):  # the run's starting values, as the fit recorded them
        extra["inits"] = json.loads((folder / "inits.json").read_text())
    try:
        return restore(design, meta["fit"], run, data, **extra)
    except PriorError:
        raise  # a saved prior this model cannot take: its own message names it
    except (ValueError, KeyError, IndexError) as exc:
        raise BayesmixError(f"the bundle {str(folder)!r}: its formula and rows do not match "
                            f"its saved Stan outputs ({type(exc).__name__}: {exc})") from None


def _mode_run(folder: Path, meta: dict) -> RunResult:
    """The optimize run a Laplace bundle's draws are centred on (run.json's "mode")."""
    m, e = meta["mode"], meta["engine"]
    return RunResult(m["method"], (str(folder / m["output"]),), m["args"],
                     EngineInfo(e["name"], e["stan_version"], e["compiler"], tuple(e["flags"])),
                     "", m["return_code"], m["elapsed"])


def rerun(path: str | os.PathLike, output_dir: str | None = None,
          engine: str | None = None, verify: bool = True,
          transforms: dict | None = None) -> Any:
    """Refit from a bundle: the same program, data, inits, arguments and seed.

    engine: None (default) reruns on the engine the bundle was made with when it is
    available here, else on the other one; "bundled", "cmdstan" or "auto" choose. The
    engine used is reported on stderr (and in the result's `run.engine`). Both engines
    run the same Stan services with the same arguments, so the draws and optima are the
    same; on the bundle's own engine they are identical to the saved CSV files."""
    from .engine import BundledModel, CmdStanEngineModel, cmdstan_available, resolve_engine
    folder, meta, design = _read(path, verify, transforms)
    restore = restorer(meta["kind"])
    if meta["kind"] in CLOSED_FORM:  # closed form: refitting is all a rerun can do
        return restore(design, meta["fit"], None, None)
    made_on = meta["engine"]["name"]
    if engine is None:
        chosen = "cmdstan" if made_on == "cmdstan" and cmdstan_available() else "bundled"
    else:
        chosen = resolve_engine(engine)
    _say(f"rerunning {folder} on the {chosen} engine (the bundle was made on the "
         f"{made_on} engine)")
    code = (folder / "model.stan").read_text()
    _check_user_header(folder, meta, code)
    data = json.loads((folder / "data.json").read_text())
    inits = json.loads((folder / "inits.json").read_text()) if meta["inits"] else None
    cls = CmdStanEngineModel if chosen == "cmdstan" else BundledModel
    model = cls(code, _program_name(meta))
    if meta["method"] == "laplace":  # the mode first, then the draws, each with its seed
        mode = model.rerun("optimize", data, meta["mode"]["args"], inits,
                           str(Path(output_dir) / "optimize") if output_dir else None)
        a = meta["args"]
        run = model.laplace(data, mode, draws=int(a["draws"]), jacobian=bool(a["jacobian"]),
                            seed=int(a["seed"]),
                            output_dir=str(Path(output_dir) / "laplace") if output_dir else None)
        return restore(design, meta["fit"], run, data, mode_run=mode)
    run = model.rerun(meta["method"], data, meta["args"], inits, output_dir)
    return restore(design, meta["fit"], run, data, **({"inits": inits} if inits else {}))


def _check_user_header(folder: Path, meta: dict, code: str) -> None:
    """A rerun compiles this bayesmix's own C++ functions, never the bundle's copy: they must
    be the ones the bundle was made with."""
    if not meta.get("user_header"):
        return
    ours = user_header(code)
    if ours is None or ours.read_bytes() != (folder / meta["user_header"]).read_bytes():
        raise BayesmixError(
            f"{folder}'s program uses C++ functions ({meta['user_header']}) that differ from "
            f"this bayesmix's (bundle made with bayesmix {meta['bayesmix_version']}, this is "
            f"{__version__}); bayesmix compiles only its own, so rerun the bundle with CmdStan "
            "as its README.md shows, or with the bayesmix version that made it")


def _say(message: str) -> None:
    logger.info(message)
    if not os.environ.get("BAYESMIX_QUIET"):
        print(f"bayesmix: {message}", file=sys.stderr, flush=True)


def _program_name(meta: dict) -> str:
    # the names the fits compile under (one cached build per program and name)
    return {"lmer": "lmer", "glmer": "glmer", "dist_ml": "dist_ml",
            "dist_nuts": "dist_nuts"}.get(meta["kind"], "model")


USER_HEADER = "user_header.hpp"  # CmdStan's default name for a program's C++ functions
RERUN_OUTPUT = "rerun.csv"  # the README's CmdStan output: never the bundle's own CSV
RERUN_MODE = "rerun-mode.csv"  # a Laplace bundle's rerun optimize output (not mode.csv)


def _cmdstan_args(meta: dict) -> str:
    """The arguments of the bundle's CmdStan command line (after `./model`), in the
    order CmdStan's argument tree requires, for files in the bundle folder."""
    from .engine.cmdstan import cmdstan_command
    return " ".join(cmdstan_command(meta["method"], meta["args"], data="data.json",
                                    init="inits.json" if meta["inits"] else None,
                                    output=RERUN_OUTPUT, mode="mode.csv"))


def _cmdstan_lines(meta: dict) -> str:
    """The README's run line(s): a Laplace bundle runs optimize (the mode, into
    rerun-mode.csv), then laplace from that mode; every other bundle one line."""
    if meta["method"] != "laplace":
        return f"./model {_cmdstan_args(meta)}"
    from .engine.cmdstan import cmdstan_command
    init = "inits.json" if meta["inits"] else None
    opt = cmdstan_command("optimize", meta["mode"]["args"], data="data.json", init=init,
                          output=RERUN_MODE)
    lap = cmdstan_command("laplace", meta["args"], data="data.json", output=RERUN_OUTPUT,
                          mode=RERUN_MODE)
    return f"./model {' '.join(opt)}\n./model {' '.join(lap)}"


def _make_line(meta: dict) -> str:
    from .engine.cmdstan import user_header_args
    header = meta.get("user_header")
    args = user_header_args(f'"$PWD/{header}"' if header else None)
    return " ".join(['make -C "$CMDSTAN"', *args, '"$PWD/model"'])


def _header_note(meta: dict) -> str:
    if not meta.get("user_header"):
        return ""
    return (f", with the C++ functions of `{meta['user_header']}` that `model.stan` declares"
            " without a body")


def _readme(meta: dict, target: Path) -> str:
    from .engine.cmdstan import cmdstan_output_files
    init = meta["inits"] is not None
    written = ", ".join(cmdstan_output_files(meta["method"], meta["args"], RERUN_OUTPUT))
    if meta["method"] == "laplace":
        written = f"{RERUN_MODE} (the mode) and {written} (the draws)"
    engine = meta["engine"]["name"]
    result = "draws" if meta["method"] in ("sample", "laplace") else "optimum"
    return f"""# bayesmix export: {_formula_title(meta)}

Family {meta['family']}({meta['link']}), {meta['kind']} fit by Stan `{meta['method']}`;{_links_line(meta)}
engine {engine} (Stan {meta['engine']['stan_version']}), bayesmix
{meta['bayesmix_version']}, seed {meta['args'].get('seed')}.

Files: `model.stan` (self-contained program), `data.json`, {'`inits.json`, ' if init else ''}\
the Stan CSV outputs ({', '.join(meta['outputs'] + ([meta['mode']['output']] if meta.get('mode') else []))}), `run.json` (every argument, seeds,
versions, compiler flags) and `model_data.csv` (the rows the model used).

## Rerun with CmdStan

In this folder (or a copy of it), with `CMDSTAN` set to a CmdStan installation
(2.33 or newer); the first line compiles `model.stan` into `./model`{_header_note(meta)}:

```bash
{_make_line(meta)}
{_cmdstan_lines(meta)}
```
{_laplace_note(meta)}
It writes {written} beside the saved {', '.join(meta['outputs'])}: the same
{result}, since CmdStan and bayesmix's bundled engine
run the same Stan algorithms with these arguments and this seed.

## Rerun or reload with Python

```python
import bayesmix
fit = bayesmix.load("{target}")    # the saved fit, no refitting
again = bayesmix.rerun("{target}")  # refit: the same {result}
```

`rerun` reports the engine it uses: by default the bundle's own ({engine}){_rerun_note(engine)};
`engine="bundled"` or `engine="cmdstan"` chooses.
"""


def _formula_title(meta: dict) -> str:
    """The formula as brms writes a distributional one: bf(y ~ x, zi ~ z)."""
    pairs = meta.get("dpars") or []
    if meta.get("kind") not in DIST_KINDS or not pairs:
        return meta["formula"]
    return "bf(" + ", ".join([meta["formula"].strip()]
                             + [f"{name} {text.strip()}" for name, text in pairs]) + ")"


def _links_line(meta: dict) -> str:
    if meta.get("kind") not in DIST_KINDS:
        return ""
    links = "; ".join(f"{d} = {link}" for d, link in meta.get("links", {}).items())
    cats = meta.get("response_categories") or []
    return (f"\nlinks {links}" + (f"; ordered response categories {' < '.join(cats)}"
                                   if cats else "") + ";")


def _laplace_note(meta: dict) -> str:
    if meta["method"] != "laplace":
        return ""
    return f"""
A Laplace approximation is two Stan runs: `optimize` with jacobian=1 finds the posterior
mode on the unconstrained scale (saved here as `mode.csv`, seed {meta['mode']['args'].get('seed')}),
then `laplace` draws from the normal approximation there (saved as
{', '.join(meta['outputs'])}, seed {meta['args'].get('seed')}). The second line alone with
`mode=mode.csv` redraws from the saved mode.
"""


def _rerun_note(engine: str) -> str:
    if engine == "cmdstan":
        return ", or the bundled one\nwhere no CmdStan installation is found"
    return ""


def _readme_closed(meta: dict, target: Path) -> str:
    return f"""# bayesmix export: {meta['formula']}

Family {meta['family']}({meta['link']}), {meta['kind']} fit in closed form (no Stan
program: {'least squares' if meta['kind'] == 'lm' else 'iteratively reweighted least squares'}),
bayesmix {meta['bayesmix_version']}.

Files: `run.json` (formula, family, factor levels, checksums) and `model_data.csv`
(the rows the model used{', with the prior weights as `(weights)`' if meta['weights'] else ''}).

```python
import bayesmix
fit = bayesmix.load("{target}")   # refits the same closed-form estimates
```
"""


provide(EXPORT, export)  # fit.export(path) of every result class
