"""Compare a regenerated reference JSON with the committed one (no test: a tool).

    python tests/reference/compare_refs.py COMMITTED.json REGENERATED.json [--tol 1e-6]

Prints how many numbers were compared, the largest absolute and relative differences (with
their paths), every number that differs by more than tol * max(1, |committed|), and every
non-numeric difference (keys, strings, lengths). Keys that record run times or the generation
date are skipped. Exits 1 when anything differs beyond the tolerance. A case missing from the
regenerated file (a subset run, e.g. LME4_REFS_CASES=...) is listed, not counted as a
difference, with --subset.
"""

from __future__ import annotations

import argparse
import json
import sys

SKIP = {"timing", "generated", "seconds", "boot_seconds", "fit_times_s", "median_s"}


def walk(old, new, path: str, out: dict, subset: bool) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key in SKIP:
                continue
            if key not in new and subset:
                out["missing"].append(f"{path}/{key}")
            elif key not in old or key not in new:
                side = "regenerated" if key not in old else "committed"
                out["other"].append(f"{path}/{key}: only in the {side} file")
            else:
                walk(old[key], new[key], f"{path}/{key}", out, subset)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out["other"].append(f"{path}: {len(old)} entries vs {len(new)}")
            return
        for i, (a, b) in enumerate(zip(old, new)):
            walk(a, b, f"{path}[{i}]", out, subset)
    elif (isinstance(old, (int, float)) and isinstance(new, (int, float))
          and not isinstance(old, bool) and not isinstance(new, bool)):
        a, b = float(old), float(new)
        diff = abs(a - b)
        out["n"] += 1
        if diff > out["abs"][0]:
            out["abs"] = (diff, path)
        if a != 0 and diff / abs(a) > out["rel"][0]:
            out["rel"] = (diff / abs(a), path)
        if diff > out["tol"] * max(1.0, abs(a)):
            out["over"].append(f"{path}: {a!r} -> {b!r}")
    elif old != new:
        out["other"].append(f"{path}: {old!r} -> {new!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("committed")
    ap.add_argument("regenerated")
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--subset", action="store_true",
                    help="entries missing from the regenerated file are not differences")
    ap.add_argument("--show", type=int, default=30, help="how many differences to list")
    a = ap.parse_args(argv)
    with open(a.committed) as fh:
        old = json.load(fh)
    with open(a.regenerated) as fh:
        new = json.load(fh)
    out = dict(n=0, abs=(0.0, None), rel=(0.0, None), over=[], other=[], missing=[],
               tol=a.tol)
    walk(old, new, "", out, a.subset)
    print(f"numbers compared: {out['n']}")
    print(f"largest absolute difference: {out['abs'][0]:.3g} at {out['abs'][1]}")
    print(f"largest relative difference: {out['rel'][0]:.3g} at {out['rel'][1]}")
    for title, rows in (("numbers beyond tol * max(1, |x|)", out["over"]),
                        ("other differences", out["other"]),
                        ("not in the regenerated file (--subset)", out["missing"])):
        print(f"{title}: {len(rows)}")
        for row in rows[:a.show]:
            print("  " + row)
    return 1 if out["over"] or out["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
