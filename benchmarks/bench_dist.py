"""Distributional models by Laplace ML at 10^3 to 10^5 rows, against glmmTMB in the same run.

    python benchmarks/bench_dist.py                 # 10^3 and 10^4 rows
    python benchmarks/bench_dist.py --full          # adds 10^5 rows
    python benchmarks/bench_dist.py --only zip-re-1e4

The designs are simulated here with fixed seeds: a zero-inflated Poisson model whose count and
zero-inflation parts both have a random intercept of one factor with rows / 20 levels
(`y ~ x + (1 | g)`, `zi = ~ x + (1 | g)`: the block-diagonal Laplace system), and a crossed
one (`(1 | g) + (1 | h)` in the count part, 200 and 50 levels: the dense system). Each fit runs
warm (one untimed fit first, which compiles or loads the program); the stages are the fit's
own `timing` (setup: design and starting values; stan; postprocess: standard errors and
results). glmmTMB runs when `Rscript` finds it: the same data through a CSV file,
`system.time` around `glmmTMB()` only. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special


def zip_data(n: int, crossed: bool, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_g = 200 if crossed else max(n // 20, 2)
    g = rng.integers(0, n_g, n)
    h = rng.integers(0, 50, n)
    x = rng.normal(size=n)
    eta = 0.5 + 0.3 * x + 0.5 * rng.normal(size=n_g)[g]
    if crossed:
        eta += 0.4 * rng.normal(size=50)[h]
        zeta = -1.0 + 0.2 * x
    else:
        zeta = -1.0 + 0.2 * x + 0.7 * rng.normal(size=n_g)[g]
    y = np.where(rng.uniform(size=n) < special.expit(zeta), 0, rng.poisson(np.exp(eta)))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})


CASES = {
    "zip-re-1e3": dict(n=1_000, crossed=False),
    "zip-re-1e4": dict(n=10_000, crossed=False),
    "zip-crossed-1e4": dict(n=10_000, crossed=True),
    "zip-re-1e5": dict(n=100_000, crossed=False, full=True),
}


def formulas(crossed: bool) -> tuple[str, str]:
    if crossed:
        return "y ~ x + (1 | g) + (1 | h)", "~ x"
    return "y ~ x + (1 | g)", "~ x + (1 | g)"


def run_ours(df: pd.DataFrame, crossed: bool) -> dict:
    import bayesmix as bm
    mu, zi = formulas(crossed)

    def fit():
        return bm.Model(bm.bf(mu, zi=zi), df, family="zero_inflated_poisson").fit()

    fit()  # warm: compiles or loads the program
    t0 = time.perf_counter()
    f = fit()
    total = time.perf_counter() - t0
    return {"time": total, "loglik": f.loglik(), "timing": f.timing}


def run_glmmtmb(df: pd.DataFrame, crossed: bool) -> dict | None:
    mu, zi = formulas(crossed)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        df.to_csv(csv, index=False)
        script = (f"suppressMessages(library(glmmTMB)); d <- read.csv('{csv}');"
                  f"tm <- system.time(m <- glmmTMB({mu}, ziformula = {zi}, family = poisson,"
                  " data = d))[['elapsed']];"
                  "cat(sprintf('{\"time\": %.17g, \"loglik\": %.17g}', tm, "
                  "as.numeric(logLik(m))))")
        try:
            out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                                 timeout=3600)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0:
            print(f"glmmTMB failed: {out.stderr[-500:]}", file=sys.stderr)
            return None
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    names = [n for n, c in CASES.items() if args.full or not c.get("full")]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    print("| case | rows | ours (s) | glmmTMB (s) | ratio | logLik diff | setup | stan "
          "| postprocess |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        case = CASES[name]
        df = zip_data(case["n"], case["crossed"])
        ours = run_ours(df, case["crossed"])
        ref = run_glmmtmb(df, case["crossed"])
        tm = ours["timing"]
        ratio = f"{ours['time'] / ref['time']:.2f}x" if ref else ""
        dll = f"{ours['loglik'] - ref['loglik']:.1e}" if ref else ""
        print(f"| {name} | {case['n']:,} | {ours['time']:.2f} | "
              f"{format(ref['time'], '.2f') if ref else ''} | {ratio} | {dll} | "
              f"{tm['setup']:.2f} | {tm['stan']:.2f} | {tm['postprocess']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
