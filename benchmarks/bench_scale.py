"""Cost curve of lmer / glmer fits from 10^4 to 10^6 rows, against lme4 in the same run.

    python benchmarks/bench_scale.py            # 10^4 and 10^5 rows (glmer 10^4), InstEval
    python benchmarks/bench_scale.py --full     # adds 10^6 rows (glmer 10^5)
    python benchmarks/bench_scale.py --only crossed-1e4,instEval
    python benchmarks/bench_scale.py --busy     # another process keeps one core busy

Every design is simulated here with a fixed seed (InstEval is the lme4 data set). Each case runs
in a fresh Python process: one warm-up fit (compiles or loads the program), then the timed fit;
the times are the fit object's own ``timings`` (design = building the model from the data
frame). lme4 runs in the same session when ``Rscript`` with lme4 is installed: the same data
through a CSV file, ``system.time`` around ``lmer`` / ``glmer`` only (the CSV read excluded).
Peak memory: ours is the largest resident memory of the Python process plus its Stan process
during the timed fit (sampled every 10 ms); lme4's is the Rscript process's maximum resident set
size (R, lme4 and the data included). Prints a markdown table, then the growth exponents b of
time ~ rows^b between successive sizes of each design, ours and lme4's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

STAGES = ("design", "suffstats", "transfer", "stan_setup", "stan", "postprocess")


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

def crossed(n: int, n_h: int, seed: int = 1) -> pd.DataFrame:
    """y ~ x + (1 + x | g) + (1 | h): g with n / 20 levels, crossed with h."""
    rng = np.random.default_rng(seed)
    n_g = n // 20
    g = rng.integers(0, n_g, n)
    h = rng.integers(0, n_h, n)
    x = rng.normal(size=n)
    L = np.linalg.cholesky(np.array([[1.0, 0.3], [0.3, 0.5]]))
    bg = rng.normal(size=(n_g, 2)) @ L.T
    bh = 0.7 * rng.normal(size=n_h)
    y = 1.0 + 0.5 * x + bg[g, 0] + bg[g, 1] * x + bh[h] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})


def nested(n: int, seed: int = 2) -> pd.DataFrame:
    """y ~ x + (1 | a/b): a with n / 200 levels, 20 b in each a (groups of about 10 rows)."""
    rng = np.random.default_rng(seed)
    n_a = max(n // 200, 2)
    a = rng.integers(0, n_a, n)
    b = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    ba = rng.normal(size=n_a)
    bab = 0.5 * rng.normal(size=(n_a, 20))
    y = 2.0 + 0.3 * x + ba[a] + bab[a, b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


def glmm(n: int, family: str, n_g: int, n_h: int, seed: int = 3) -> pd.DataFrame:
    """y ~ x + (1 | g) + (1 | h), bernoulli (logit) or poisson (log)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_g, n)
    h = rng.integers(0, n_h, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * x + 0.8 * rng.normal(size=n_g)[g] + 0.5 * rng.normal(size=n_h)[h]
    if family == "bernoulli":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})


def instEval() -> pd.DataFrame:
    from bayesmix.datasets import load
    d = load("InstEval").copy()
    return d


def cases(full: bool) -> list[dict]:
    out = []
    sizes = [10_000, 100_000] + ([1_000_000] if full else [])
    for n in sizes:
        n_h = 200 if n < 1_000_000 else 2000
        out.append(dict(name=f"crossed-1e{len(str(n)) - 1}", rows=n,
                        levels=f"g {n // 20}, h {n_h}",
                        formula="y ~ x + (1 + x | g) + (1 | h)", method="ml",
                        make=lambda n=n, n_h=n_h: crossed(n, n_h), factors=["g", "h"]))
    for n in sizes:
        out.append(dict(name=f"nested-1e{len(str(n)) - 1}", rows=n,
                        levels=f"a {max(n // 200, 2)}, a:b {max(n // 200, 2) * 20}",
                        formula="y ~ x + (1 | a/b)", method="ml",
                        make=lambda n=n: nested(n), factors=["a", "b"]))
    out.append(dict(name="instEval", rows=73421, levels="s 2972, d 1128, dept:service 28",
                    formula="y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
                    method="reml", make=instEval, factors=["s", "d", "dept", "service"]))
    for n in [10_000] + ([100_000] if full else []):
        n_g, n_h = (500, 200) if n == 10_000 else (2000, 500)
        for fam in ("bernoulli", "poisson"):
            out.append(dict(name=f"glmer-{fam}-1e{len(str(n)) - 1}", rows=n,
                            levels=f"g {n_g}, h {n_h}", formula="y ~ x + (1 | g) + (1 | h)",
                            method="ml", family=fam,
                            make=lambda n=n, fam=fam, n_g=n_g, n_h=n_h: glmm(n, fam, n_g, n_h),
                            factors=["g", "h"]))
    return out


# ---------------------------------------------------------------------------------------------
# Our fit (in a worker process) and lme4's
# ---------------------------------------------------------------------------------------------

def _rss_mb(pid: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakMemory:
    """Samples the resident memory of this process plus its children (Stan) every 10 ms and
    keeps the largest sum (Linux /proc; the children's own ru_maxrss would count the pages
    they share with Python right after fork)."""

    def __init__(self):
        import threading
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[str]:
        out = []
        for task in Path("/proc/self/task").glob("*/children"):
            try:
                out += task.read_text().split()
            except OSError:
                pass
        return out

    def _run(self):
        while not self._stop.is_set():
            total = _rss_mb("self") + sum(_rss_mb(c) for c in self._children())
            self.peak = max(self.peak, total)
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def worker(spec: dict) -> None:
    """Warm-up fit, then the timed fit; prints one JSON line."""
    import bayesmix
    df = pd.read_csv(spec["csv"], dtype={f: str for f in spec["factors"]})
    family = spec.get("family")
    kwargs = {} if family is None else {"family": family}
    method = spec["method"]

    def one_fit():
        t0 = time.perf_counter()
        model = bayesmix.Model(spec["formula"], df, **kwargs)
        t1 = time.perf_counter()
        fit = model.fit(method=method) if family is None else model.fit()
        t2 = time.perf_counter()
        return fit, t1 - t0, t2 - t0

    one_fit()  # warm-up: compiles or loads the program, imports everything
    if spec.get("compile_only"):
        return
    with PeakMemory() as mem:
        fit, design_s, total = one_fit()
    timings = dict(getattr(fit, "timings", {}))
    timings["design"] = design_s
    timings["total"] = total
    print(json.dumps({"timings": timings, "loglik": float(fit.loglik()), "peak_mb": mem.peak}))


R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(%(classes)s))
%(prep)s
invisible(gc(reset = TRUE))
tm <- system.time(fit <- %(call)s)[["elapsed"]]
mx <- sum(gc()[, ncol(gc()) - 1])
cat(sprintf("%%.6f %%.6f %%.3f\n", tm, as.numeric(logLik(fit)), mx))
"""


def lme4_available() -> bool:
    try:
        out = subprocess.run(["Rscript", "-e", "cat(requireNamespace('lme4', quietly=TRUE))"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip().endswith("TRUE")


def run_lme4(case: dict, csv: str, df: pd.DataFrame) -> dict | None:
    classes = ", ".join(f"{c}='{'character' if c in case['factors'] else 'numeric'}'"
                        for c in df.columns)
    prep = "\n".join(f"d${f} <- factor(d${f})" for f in case["factors"])
    formula = case["formula"]
    if case.get("family"):
        fam = "binomial" if case["family"] == "bernoulli" else "poisson"
        call = f"glmer({formula}, data = d, family = {fam})"
    else:
        call = f"lmer({formula}, data = d, REML = {'TRUE' if case['method'] == 'reml' else 'FALSE'})"
    script = R_SCRIPT % {"classes": classes, "prep": prep, "call": call}
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(script)
    code, out, err, peak = run_measured(["Rscript", fh.name, csv])
    os.unlink(fh.name)
    if code != 0 or not out.strip():
        print(f"# lme4 failed on {case['name']}: {err.strip()[-300:]}", file=sys.stderr)
        return None
    tm, ll, _ = (float(v) for v in out.split()[-3:])
    return {"time": tm, "loglik": ll, "peak_mb": peak}


def run_measured(cmd: list[str]) -> tuple[int, str, str, float]:
    """Run a command; (exit code, stdout, stderr, its peak resident memory in MB)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return proc.returncode, fo.read(), fe.read(), usage.ru_maxrss / 1024


def run_ours(case: dict, csv: str) -> dict:
    spec = {k: v for k, v in case.items() if k != "make"}
    spec["csv"] = csv
    # compile first in a process of its own, so that the compiler's memory is not counted
    code, _, err, _ = run_measured([sys.executable, __file__, "--worker",
                                    json.dumps({**spec, "compile_only": True})])
    if code != 0:
        raise RuntimeError(f"our fit of {case['name']} failed:\n{err[-2000:]}")
    code, out, err, peak = run_measured([sys.executable, __file__, "--worker",
                                         json.dumps(spec)])
    if code != 0:
        raise RuntimeError(f"our fit of {case['name']} failed:\n{err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["process_peak_mb"] = peak  # the worker's own maximum (includes the warm-up fit)
    return res


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------

def fmt_s(x) -> str:
    return "" if x is None or not np.isfinite(x) else (f"{x:.2f}" if x < 10 else f"{x:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="add 10^6 rows (glmer 10^5)")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--no-lme4", action="store_true", help="skip lme4 even if installed")
    ap.add_argument("--json", default="", help="also write the results to this file")
    ap.add_argument("--busy", action="store_true",
                    help="keep one core busy with another process during every fit")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.busy:
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            run_all(args)
        finally:
            burner.kill()
        return
    run_all(args)


def exponents(rows: list[dict]) -> list[str]:
    """b in time ~ rows^b between successive sizes of each simulated design."""
    out = []
    by_design: dict[str, list[dict]] = {}
    for r in rows:
        name = r["case"]["name"]
        if "-1e" in name:
            by_design.setdefault(name.rsplit("-1e", 1)[0], []).append(r)
    for design, rs in by_design.items():
        rs = sorted(rs, key=lambda r: r["case"]["rows"])
        for a, b in zip(rs, rs[1:]):
            span = np.log(b["case"]["rows"] / a["case"]["rows"])
            ours = np.log(b["ours"]["timings"]["total"] / a["ours"]["timings"]["total"]) / span
            ref = ""
            if a["lme4"] and b["lme4"]:
                ref = f", lme4 {np.log(b['lme4']['time'] / a['lme4']['time']) / span:.2f}"
            out.append(f"{design} {a['case']['rows']:,} -> {b['case']['rows']:,} rows: "
                       f"ours {ours:.2f}{ref}")
    return out


def run_all(args) -> None:
    use_r = not args.no_lme4 and lme4_available()
    only = {s for s in args.only.split(",") if s}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for case in cases(args.full):
            if only and case["name"] not in only:
                continue
            df = case["make"]()
            csv = str(Path(tmp) / f"{case['name']}.csv")
            df.to_csv(csv, index=False)
            ours = run_ours(case, csv)
            ref = run_lme4(case, csv, df) if use_r else None
            rows.append({"case": case, "ours": ours, "lme4": ref})
            t = ours["timings"]
            print(f"# {case['name']}: ours {t['total']:.2f} s"
                  + (f", lme4 {ref['time']:.2f} s, logLik diff "
                     f"{ours['loglik'] - ref['loglik']:.2e}" if ref else ""),
                  file=sys.stderr, flush=True)
    head = ("| case | rows | levels | ours (s) | lme4 (s) | ratio | peak MB ours | peak MB lme4 "
            "| logLik diff | " + " | ".join(STAGES) + " |")
    print(head)
    print("|" + "---|" * (8 + len(STAGES)))
    for r in rows:
        c, o, ref = r["case"], r["ours"], r["lme4"]
        t = o["timings"]
        lt = ref["time"] if ref else None
        ratio = f"{t['total'] / lt:.2f}x" if lt else ""
        dll = f"{o['loglik'] - ref['loglik']:.1e}" if ref else ""
        stages = " | ".join(fmt_s(t.get(s)) for s in STAGES)
        print(f"| {c['name']} | {c['rows']:,} | {c['levels']} | {fmt_s(t['total'])} | "
              f"{fmt_s(lt)} | {ratio} | {o['peak_mb']:.0f} | "
              f"{'' if not ref else format(ref['peak_mb'], '.0f')} | {dll} | {stages} |")
    growth = exponents(rows)
    if growth:
        print("\nGrowth exponents (time ~ rows^b):")
        for line in growth:
            print(f"- {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"name": r["case"]["name"], "ours": r["ours"], "lme4": r["lme4"]} for r in rows],
            indent=1))


if __name__ == "__main__":
    main()
