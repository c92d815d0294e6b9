"""1,000 parametric-bootstrap refits of sleepstudy (Days | Subject) against lme4's bootMer,
in the same run, and how the time scales with workers.

Run: python benchmarks/bench_bootstrap.py [--nsim 1000] [--workers 1 2] [--repeat 3] [--dask]
     [--no-r]

* ours: bayesmix.bootstrap(fit, nsim, seed=1, executor=...) with the default statistic (SDs,
  correlation, sigma, fixed effects -- what confint(method = "boot") bootstraps). "serial"
  runs in this process; "pool(k)" is a fresh process pool of k workers, its start-up included.
* lme4: bootMer(fm, FUN, nsim, seed = 1) with the same statistic, timed inside R
  (system.time; R's start-up and lme4's loading excluded), when Rscript and lme4 are there.
* Stan-per-refit costs (refit="stan" for lmer, glmer on cbpp): a few refits, per refit.

Every run of ours draws the same replicates (seeded per replicate), which the script checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

import numpy as np

import bayesmix
from bayesmix.datasets import load

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
FUN <- function(x) {
  vc <- as.data.frame(VarCorr(x), order = "lower.tri")
  c(vc$sdcor, fixef(x))
}
invisible(bootMer(fm, FUN, nsim = 20, seed = 2))  # warm-up
t <- system.time(b <- bootMer(fm, FUN, nsim = NSIM, seed = 1))[["elapsed"]]
cat(sprintf('{"seconds": %.4f, "lme4": "%s", "failed": %d}\n', t, packageVersion("lme4"),
            sum(!complete.cases(b$t))))
"""


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (pool workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_r(nsim: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    try:
        out = subprocess.run(["Rscript", "-e", R_SCRIPT.replace("NSIM", str(nsim))],
                             capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return None
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    print("R failed:", out.stderr[-500:])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsim", type=int, default=1000)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--dask", action="store_true",
                    help="also a Dask LocalCluster of 2 single-threaded worker processes "
                         "(cluster start-up excluded; its CPU is not counted)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per setting (best kept)")
    args = ap.parse_args()
    os.environ.setdefault("BAYESMIX_QUIET", "1")

    data = load("sleepstudy")
    fit = bayesmix.lmer("Reaction ~ Days + (Days | Subject)", data)
    bayesmix.bootstrap(fit, 10, seed=0, executor="serial")  # warm-up (imports, caches)
    print(f"sleepstudy (Days | Subject), REML, {args.nsim} parametric-bootstrap refits; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

    rows, tables = [], []
    settings = [("serial", "serial")] + [(f"pool({k})", k) for k in args.workers]
    for label, executor in settings:
        best, cpu_best = np.inf, np.nan
        for _ in range(args.repeat):
            c0 = _cpu()
            t = time.perf_counter()
            res = bayesmix.bootstrap(fit, args.nsim, seed=1, executor=executor, progress=False)
            wall = time.perf_counter() - t
            if wall < best:
                best, cpu_best = wall, _cpu() - c0
        tables.append(res.replicates)
        rows.append((label, best, res.n_failed, res.n_warnings, cpu_best))
    if args.dask:
        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            bayesmix.bootstrap(fit, 10, seed=0, executor=client, progress=False)  # warm-up
            best = np.inf
            for _ in range(args.repeat):
                t = time.perf_counter()
                res = bayesmix.bootstrap(fit, args.nsim, seed=1, executor=client,
                                         progress=False)
                best = min(best, time.perf_counter() - t)
        tables.append(res.replicates)
        rows.append(("dask(2)", best, res.n_failed, res.n_warnings, np.nan))
    same = all(t.equals(tables[0]) for t in tables[1:])

    r = None if args.no_r else run_r(args.nsim)
    print(f"{'run':12} {'seconds':>8} {'refits/s':>9} {'vs bootMer':>11} {'failed':>7} "
          f"{'warned':>7} {'CPU s':>7} {'CPU/wall':>9}")
    for label, sec, failed, warned, cpu in rows:
        ratio = f"{sec / r['seconds']:.2f}x" if r else "-"
        print(f"{label:12} {sec:8.2f} {args.nsim / sec:9.0f} {ratio:>11} {failed:7d} "
              f"{warned:7d} {cpu:7.2f} {cpu / sec:9.2f}")
    if r:
        print(f"{'lme4 bootMer':12} {r['seconds']:8.2f} {args.nsim / r['seconds']:9.0f} "
              f"{'1.00x':>11} {r['failed']:7d}        (lme4 {r['lme4']})")
    else:
        print("lme4 bootMer: not run (no Rscript/lme4, or --no-r)")
    base = rows[0][1]
    print("scaling: " + ", ".join(f"{label} {base / sec:.2f}x of serial"
                                  for label, sec, *_ in rows[1:]))
    print("(CPU/wall: cores' worth of CPU the run got -- this process and its finished "
          "workers; on a machine busy with other work, 2 workers get less than 2)")
    print(f"replicate tables identical on every executor: {same}")

    # what a refit costs when it goes through Stan
    t = time.perf_counter()
    bayesmix.bootstrap(fit, 20, seed=1, executor="serial", refit="stan", progress=False)
    stan_lmer = (time.perf_counter() - t) / 20
    g = bayesmix.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                       load("cbpp"), family="binomial")
    t = time.perf_counter()
    bayesmix.bootstrap(g, 20, seed=1, executor="serial", progress=False)
    stan_glmer = (time.perf_counter() - t) / 20
    print(f"per refit through Stan (serial): lmer sleepstudy {1e3 * stan_lmer:.0f} ms "
          f"(fast numpy refit {1e3 * rows[0][1] / args.nsim:.1f} ms), "
          f"glmer cbpp {1e3 * stan_glmer:.0f} ms")


if __name__ == "__main__":
    main()
