"""glmer-equivalent (Laplace ML) fit times against lme4 1.1-31's recorded times.

Run: python benchmarks/bench_glmer.py  (the reference cases and their data
loaders live with the tests: tests/reference/glmm_refs.json)."""

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_glmer import CASES, case_data, case_family  # noqa: E402

import bayesmix  # noqa: E402


def main(repeats: int = 3) -> None:
    bayesmix.glmer(CASES["cbpp_binomial"]["formula"], case_data("cbpp_binomial"))  # compile
    print(f"{'case':16} {'ours (s)':>9} {'lme4 (s)':>9} {'ratio':>7} {'dlogLik':>10}")
    for name, case in CASES.items():
        fam, link = case_family(name)
        data = case_data(name)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fit = bayesmix.glmer(case["formula"], data, family=fam, link=link)
            times.append(time.perf_counter() - t)
        ours = statistics.median(times)
        lme4 = case["timing"]["median_s"]
        print(f"{name:16} {ours:9.3f} {lme4:9.3f} {ours / lme4:7.2f} "
              f"{fit.loglik() - case['results']['logLik']:10.2e}")


if __name__ == "__main__":
    main()
