"""Profile confidence intervals (confint(method="profile")) against lme4's confint.

Run: python benchmarks/bench_confint.py [--repeats N] [--no-r]

Times bayesmix's profile intervals for sleepstudy (Days | Subject) (REML and ML) and a few
more reference fits, and, when Rscript with lme4 is available, lme4's
confint(fit, method = "profile", oldNames = FALSE) on the same data in the same run (the fit
itself is not timed on either side). Also times Satterthwaite and Kenward-Roger coefficient
tables against lmerTest's summary(). Reports the largest difference of the interval limits
from lme4's, as a fraction of the interval's width."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import bayesmix
from bayesmix.datasets import load

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "sleepstudy_slope_REML": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", True),
    "sleepstudy_slope_ML": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", False),
    "penicillin_crossed_REML": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", True),
    "lmmdata_nested_REML": ("extro ~ open + agree + social + (1 | school/class)", "lmmdata",
                            True),
    # glmer (Laplace): the profile of the deviance jointly over the SD and the fixed effects
    "cbpp_binomial_glmer": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp",
                            "binomial"),
}
FACTORS = {"sleepstudy": ["Subject"], "Penicillin": ["plate", "sample"],
           "lmmdata": ["class", "school"], "cbpp": ["herd", "period"]}

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
cases <- fromJSON(args[1], simplifyVector = FALSE)
reps <- as.integer(args[2])
out <- list()
for (key in names(cases)) {
  c <- cases[[key]]
  d <- read.csv(file.path("bayesmix/datasets", paste0(c$data, ".csv")),
                colClasses = setNames(rep("character", length(c$factors)), unlist(c$factors)))
  for (col in unlist(c$factors)) {
    v <- d[[col]]; num <- suppressWarnings(as.numeric(unique(v)))
    lev <- if (all(!is.na(num))) unique(v)[order(num)] else sort(unique(v), method = "radix")
    d[[col]] <- factor(v, levels = lev)
  }
  is_glmm <- is.character(c$REML)
  fit <- if (is_glmm) glmer(as.formula(c$formula), data = d, family = c$REML) else
    lmerTest::lmer(as.formula(c$formula), data = d, REML = c$REML)
  times <- numeric(reps)
  for (i in seq_len(reps)) {
    t0 <- proc.time()[["elapsed"]]
    ci <- suppressMessages(suppressWarnings(confint(fit, method = "profile", oldNames = FALSE)))
    times[i] <- proc.time()[["elapsed"]] - t0
  }
  satt <- NA
  kr <- NA
  if (!is_glmm) {
    t0 <- proc.time()[["elapsed"]]
    fit2 <- lmerTest::lmer(as.formula(c$formula), data = d, REML = c$REML)  # Hessian, Jacobian
    s <- summary(fit2, ddf = "Satterthwaite")
    satt <- proc.time()[["elapsed"]] - t0
    if (c$REML) { t0 <- proc.time()[["elapsed"]]; s <- summary(fit, ddf = "Kenward-Roger")
                  kr <- proc.time()[["elapsed"]] - t0 }
  }
  out[[key]] <- list(seconds = median(times), rows = rownames(ci),
                     values = lapply(seq_len(nrow(ci)), function(i) unname(ci[i, ])),
                     satterthwaite_fit_and_summary = satt, kenward_roger_summary = kr)
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null"))
"""


def run_r(repeats: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    spec = {k: dict(formula=f, data=d, REML=r, factors=FACTORS[d]) for k, (f, d, r) in CASES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        cases = Path(tmp) / "cases.json"
        cases.write_text(json.dumps(spec))
        proc = subprocess.run(["Rscript", str(script), str(cases), str(repeats)], cwd=ROOT,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        print("Rscript failed:", proc.stderr.strip()[-500:])
        return None
    return json.loads(proc.stdout)


def _secs(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    ref = None if args.no_r else run_r(args.repeats)
    if ref is None:
        print("(no R comparison: Rscript/lme4/lmerTest not available or --no-r)")
    print(f"{'case':26} {'profile ours':>12} {'lme4':>8} {'ratio':>6} {'max |diff|/width':>17}"
          f" {'Satt ours':>10} {'KR ours':>8}")
    for key, (formula, data, reml) in CASES.items():
        glmm = isinstance(reml, str)
        fit = (bayesmix.glmer(formula, load(data), family=reml) if glmm
               else bayesmix.lmer(formula, load(data), REML=reml))
        times = []
        for _ in range(args.repeats):
            for attr in ("_inference_ss", "_satterthwaite", "_kenward_roger"):
                fit.__dict__.pop(attr, None)  # nothing cached between repeats
            t = time.perf_counter()
            ci = fit.confint(method="profile")
            times.append(time.perf_counter() - t)
        ours = float(np.median(times))
        satt = kr = float("nan")
        if not glmm:
            t = time.perf_counter()
            fit.coef_table("Satterthwaite")
            satt = time.perf_counter() - t
        if reml is True:
            t = time.perf_counter()
            fit.coef_table("Kenward-Roger")
            kr = time.perf_counter() - t
        if ref is not None and key in ref:
            r = ref[key]
            rv = np.array(r["values"], float)
            width = rv[:, 1] - rv[:, 0]
            dev = float(np.max(np.abs(ci.to_numpy() - rv) / width[:, None]))
            lme4 = r["seconds"]
            print(f"{key:26} {ours:11.2f}s {lme4:7.2f}s {ours / lme4:6.2f} {dev:17.1e}"
                  f" {_secs(satt):>10} {_secs(kr):>8}")
        else:
            print(f"{key:26} {ours:11.2f}s {'-':>8} {'-':>6} {'-':>17} {_secs(satt):>10} "
                  f"{_secs(kr):>8}")
    if ref is not None:
        print("\nlmerTest in the same run (seconds): lmer fit + Satterthwaite summary; KR summary")
        for key, r in ref.items():
            if r["satterthwaite_fit_and_summary"] is None:
                continue
            print(f"  {key:26} {_secs(r['satterthwaite_fit_and_summary'])}  "
                  f"{_secs(r['kenward_roger_summary'])}")


if __name__ == "__main__":
    main()
