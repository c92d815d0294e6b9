"""Execute the notebooks in place so that they are committed with their outputs.

    python tools/run_notebooks.py                 # every notebooks/*.ipynb
    python tools/run_notebooks.py notebooks/x.ipynb
    python tools/run_notebooks.py --check         # only check the committed outputs

The documentation site renders the committed outputs (it never executes a notebook), so
this is the step that refreshes the gallery. Each notebook runs top to bottom in a fresh
kernel with a scratch working directory and BAYESMIX_QUIET=1 (no progress bars or compile
notes: nobody watches a rendered page); figures are captured inline as PNG. Afterwards
only stable metadata is kept (kernelspec, the language's name): no timings, no versions,
no widget state, so re-running an unchanged notebook changes only what its outputs show.
A notebook that raises, or writes anything to stderr (warnings, progress bars), is
reported and not written: the committed notebooks show no warnings.

Needs the `test` extra (nbclient, nbformat, ipykernel, matplotlib); bayesmix itself is
imported only by the notebooks' kernels.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
KEEP_NOTEBOOK_METADATA = ("kernelspec",)
KEEP_CELL_METADATA = ("tags",)


def problems(nb) -> list[str]:
    """What keeps an executed notebook from being committed: unexecuted code cells, error
    outputs and text on stderr."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if not cell.get("execution_count"):
            found.append(f"cell {i}: not executed")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"cell {i}: stderr: {out.get('text', '').strip()[:200]}")
    return found


def clean_metadata(nb) -> None:
    """Keep only metadata that does not change from one run (or machine) to the next."""
    language = nb.metadata.get("language_info", {}).get("name", "python")
    nb.metadata = nbformat.NotebookNode(
        {k: nb.metadata[k] for k in KEEP_NOTEBOOK_METADATA if k in nb.metadata})
    nb.metadata["language_info"] = {"name": language}
    for cell in nb.cells:
        cell.metadata = nbformat.NotebookNode(
            {k: cell.metadata[k] for k in KEEP_CELL_METADATA if k in cell.metadata})
        for out in cell.get("outputs", []):
            if "metadata" in out:
                # matplotlib's PNG size hints are stable; anything else (widget ids) is not
                out.metadata = nbformat.NotebookNode(
                    {k: v for k, v in out.metadata.items() if k.startswith("image/")})


def execute(path: Path, timeout: int, force: bool = False) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.pop("MPLBACKEND", None)  # Agg would drop the inline figures
    # Progress bars and compile notes are for someone watching a live run; a rendered page
    # has nobody watching (the kernel inherits this environment).
    os.environ["BAYESMIX_QUIET"] = "1"
    try:
        with tempfile.TemporaryDirectory(prefix="bayesmix-nb-") as scratch:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                           allow_errors=True,
                           resources={"metadata": {"path": scratch}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    found = problems(nb)
    if force or not found:
        clean_metadata(nb)
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="do not execute: check that the committed outputs are clean")
    parser.add_argument("--force", action="store_true",
                        help="write executed notebooks even with problems (to look at them)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    failed = False
    for path in paths:
        start = time.perf_counter()
        if args.check:
            found = problems(nbformat.read(path, as_version=4))
        else:
            found = execute(path, args.timeout, args.force)
        verb = "checked" if args.check else "executed"
        state = ("ok" if not found else "FAILED" if args.check or args.force
                 else "NOT written")
        print(f"{path}: {verb} in {time.perf_counter() - start:.0f} s: {state}")
        for line in found:
            print(f"  {line}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
