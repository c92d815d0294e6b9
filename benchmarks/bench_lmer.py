"""lmer-equivalent fit times against lme4 1.1-31's recorded times.

Run: python benchmarks/bench_lmer.py   (the first fit includes the one-time
compile of the generic ML program; it is reported separately.)"""

import json
import time
from pathlib import Path

import bayesmix
from bayesmix.datasets import load
from bayesmix.engine import compile_model
from bayesmix.ml import lmer_code

REFS = json.loads((Path(__file__).parents[1] / "tests/reference/lme4_refs.json").read_text())


def main() -> None:
    t = time.perf_counter()
    model = compile_model(lmer_code(), "lmer")
    print(f"generic lmer program: compile/cache lookup {time.perf_counter() - t:.2f} s "
          f"(this process: {model.compile_seconds:.2f} s)")
    print(f"{'case':28} {'ours (s)':>9} {'lme4 (s)':>9} {'ratio':>7} {'dlogLik':>10}")
    for name, case in REFS["cases"].items():
        if case["family"] != "gaussian":
            continue
        data = load(Path(case["data_file"]).stem)
        ref = case["results"]
        t = time.perf_counter()
        fit = bayesmix.lmer(case["formula"], data, REML=case["method"] == "REML")
        ours = time.perf_counter() - t
        lme4 = ref["timing"]["median_s"] if isinstance(ref.get("timing"), dict) \
            else float("nan")
        print(f"{name:28} {ours:9.3f} {lme4:9.3f} {ours / lme4:7.2f} "
              f"{fit.loglik() - ref['logLik']:10.2e}")


if __name__ == "__main__":
    main()
