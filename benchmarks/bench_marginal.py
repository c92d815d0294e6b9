"""Marginal vs joint NUTS programs for gaussian mixed models (issue 9).

For lmmdata `extro ~ open + agree + social + (1 | school/class)` and sleepstudy
`Reaction ~ Days + (Days | Subject)`, 4 chains x 1000 warmup + 1000 draws each, prints: compile
time (cache lookup when the program is already built; the generic marginal program is compiled
once per toolchain), sampling time, post-processing time (marginal: the exact random-effect
draws, log_lik and y_rep in numpy), min bulk ESS over every posterior quantity (random effects
included), min bulk ESS per second of sampling, divergences and mean leapfrog steps per draw.

The joint program runs as brms would for sleepstudy (non-centred, diag_e) and with
centered=True, metric="dense_e" for lmmdata (its non-centred form takes minutes there).

Run: python benchmarks/bench_marginal.py [--chains 4] [--iter 1000] [--seed 1]

Bayesian at scale (issue 12): ``--bayes`` runs instead the simulated crossed design of
bench_scale.py, ``y ~ x + (1 + x | g) + (1 | h)`` (10^4 rows: g 500 levels, h 200; ``--rows
100000``: g 5,000), 2 chains x (500 warmup + 500 draws) by default, and prints the stage split:
the call to ``sample`` (design, data, Stan), Stan's sampling time, the post-sampling work
(``to_arviz``: the exact random-effect draws, log_lik, y_rep and the InferenceData) and its share
of sampling, min bulk ESS of the hyperparameters (every scalar quantity: fixed effects, sd's,
correlation, sigma) and per second of sampling. ``--joint`` adds the joint program.

    python benchmarks/bench_marginal.py --bayes [--rows 10000] [--joint]
"""

import argparse
import time
import warnings

import arviz as az
import numpy as np

import bayesmix
from bayesmix.datasets import load

CASES = [
    ("lmmdata nested", "extro ~ open + agree + social + (1 | school/class)", "lmmdata",
     {"centered": True, "metric": "dense_e"}),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "sleepstudy", {}),
]


def run(formula, data, program, chains, n_iter, seed, joint_kw):
    kw = dict(chains=chains, iter_warmup=n_iter, iter_sampling=n_iter, seed=seed,
              show_progress=False, diagnostics=False)
    if program == "joint":
        kw.update(joint_kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayesmix.Model(formula, data).sample(program=program, **kw)
        t1 = time.perf_counter()
        idata = fit.to_arviz()  # marginal: the random effects, log_lik and y_rep are drawn here
        t2 = time.perf_counter()
        ess = az.ess(idata, method="bulk")
    min_ess = min(float(np.nanmin(ess[v].values)) for v in ess.data_vars)
    sampling = float(fit.run.elapsed)
    post = t2 - t1
    return {
        "compile": fit.compile_seconds,
        "sampling": sampling,
        "post": post,
        "total": t2 - t0,
        "min_ess": min_ess,
        "ess_s": min_ess / sampling,
        "div": int(idata.sample_stats["diverging"].sum()),
        "leapfrog": float(idata.sample_stats["n_steps"].mean()),
        "type": type(fit).__name__,
    }


SCALE_FORMULA = "y ~ x + (1 + x | g) + (1 | h)"
BRMS_1E4 = "brms (issue 12, cold, 2 x 500 + 500): 120 s total, 63 s sampling, min bulk ESS 247"


class _StanClock:
    """Wraps bayesmix.engine.compile_model so that the Stan call's start and end are known:
    everything after it in ``sample`` (the fit object, the exact random-effect draws, the
    diagnostics and their InferenceData) is post-sampling work."""

    def __init__(self):
        import bayesmix.engine as eng
        self.eng, self.orig, self.marks = eng, eng.compile_model, {}

    def __enter__(self):
        clock = self

        class Timed:
            def __init__(self, model):
                self._model = model

            def __getattr__(self, name):
                return getattr(self._model, name)

            def sample(self, *args, **kw):
                clock.marks["stan_start"] = time.perf_counter()
                try:
                    return self._model.sample(*args, **kw)
                finally:
                    clock.marks["stan_end"] = time.perf_counter()

        self.eng.compile_model = lambda *a, **k: Timed(self.orig(*a, **k))
        return self

    def __exit__(self, *exc):
        self.eng.compile_model = self.orig


def run_scale(rows, program, chains, n_warmup, n_iter, seed):
    """One fit of the crossed design, timed by stage."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_scale import crossed
    df = crossed(rows, 200)
    kw = dict(chains=chains, iter_warmup=n_warmup, iter_sampling=n_iter, seed=seed,
              show_progress=False, program=program)
    with warnings.catch_warnings(), _StanClock() as clock:
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fit = bayesmix.Model(SCALE_FORMULA, df).sample(**kw)
        idata = fit.to_arviz()
        t2 = time.perf_counter()
    m = clock.marks
    post = idata.posterior
    hyper = [v for v in post.data_vars if post[v].ndim == 2]   # scalars: (chain, draw)
    ess = az.ess(idata, var_names=hyper, method="bulk")
    min_ess = min(float(ess[v]) for v in hyper)
    sampling = float(fit.run.elapsed)
    return {"before": m["stan_start"] - t0, "stan_call": m["stan_end"] - m["stan_start"],
            "sampling": sampling, "post": t2 - m["stan_end"], "total": t2 - t0,
            "min_ess": min_ess, "ess_s": min_ess / sampling,
            "div": int(idata.sample_stats["diverging"].sum()), "type": type(fit).__name__}


BRMS_SCRIPT = r"""
suppressMessages(library(brms))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(g = "character", h = "character"))
t0 <- Sys.time()
fit <- brm(y ~ x + (1 + x | g) + (1 | h), data = d, chains = as.integer(args[2]),
           iter = as.integer(args[3]) + as.integer(args[4]), warmup = as.integer(args[3]),
           seed = as.integer(args[5]), cores = as.integer(args[2]), refresh = 0, silent = 2)
total <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
el <- rstan::get_elapsed_time(fit$fit)
# min bulk ESS over the same scalars as ours: fixed effects, sd's, the correlation, sigma
draws <- posterior::as_draws_df(fit)
keep <- grep("^(b_|sd_|cor_|sigma$)", posterior::variables(draws), value = TRUE)
ess <- min(posterior::summarise_draws(posterior::subset_draws(draws, variable = keep),
                                      posterior::ess_bulk)$ess_bulk)
div <- sum(rstan::get_divergent_iterations(fit$fit))
cat(sprintf("%.3f %.3f %.1f %d\n", total, max(rowSums(el)), ess, div))
"""


def run_brms(rows, chains, n_warmup, n_iter, seed) -> dict | None:
    """brms on the same data and settings, cold (its compile included), when R has brms."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_scale import crossed
    try:
        ok = subprocess.run(["Rscript", "-e", "cat(requireNamespace('brms', quietly=TRUE))"],
                            capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    if not ok.strip().endswith("TRUE"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "d.csv", Path(tmp) / "brms.R"
        crossed(rows, 200).to_csv(csv, index=False)
        script.write_text(BRMS_SCRIPT)
        out = subprocess.run(["Rscript", str(script), str(csv), str(chains), str(n_warmup),
                              str(n_iter), str(seed)], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        print(f"# brms failed: {out.stderr.strip()[-500:]}")
        return None
    total, sampling, ess, div = out.stdout.split()[-4:]
    return {"total": float(total), "sampling": float(sampling), "min_ess": float(ess),
            "div": int(div)}


def main_scale(a) -> None:
    print(f"{SCALE_FORMULA}, {a.rows:,} rows (g {a.rows // 20}, h 200), {a.chains} chains x "
          f"({a.warmup} warmup + {a.iter} draws), seed {a.seed}")
    print("before: design, data, program lookup; Stan call: transfer + sampling + reading the "
          "draws; post: everything after (random effects, log_lik, y_rep, diagnostics, "
          "InferenceData)")
    head = (f"{'program':9} {'total s':>8} {'before s':>8} {'Stan call s':>11} "
            f"{'sampling s':>10} {'post s':>7} {'post/sampling':>13} {'minESS':>7} "
            f"{'ESS/s':>6} {'div':>4}")
    print(head)
    print("-" * len(head))
    for program in ("marginal",) + (("joint",) if a.joint else ()):
        r = run_scale(a.rows, program, a.chains, a.warmup, a.iter, a.seed)
        print(f"{program:9} {r['total']:8.1f} {r['before']:8.2f} {r['stan_call']:11.1f} "
              f"{r['sampling']:10.1f} {r['post']:7.2f} {r['post'] / r['sampling']:13.1%} "
              f"{r['min_ess']:7.0f} {r['ess_s']:6.1f} {r['div']:4d}", flush=True)
        if program == "marginal":
            ours_total = r["total"]
    brms = run_brms(a.rows, a.chains, a.warmup, a.iter, a.seed) if a.brms else None
    if brms:
        print(f"{'brms':9} {brms['total']:8.1f} {'':>8} {'':>11} {brms['sampling']:10.1f} "
              f"{'':>7} {'':>13} {brms['min_ess']:7.0f} "
              f"{brms['min_ess'] / brms['sampling']:6.1f} {brms['div']:4d}  (cold: its compile "
              "included; sampling = the slowest chain)")
        print(f"marginal / brms total time: {ours_total / brms['total']:.2f}x")
    elif a.rows == 10_000:
        print(BRMS_1E4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--iter", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bayes", action="store_true", help="the crossed design at scale")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--joint", action="store_true", help="--bayes: also the joint program")
    ap.add_argument("--brms", action="store_true",
                    help="--bayes: also brms on the same data (needs Rscript with brms)")
    a = ap.parse_args()
    if a.bayes:
        if a.chains == 4 and a.iter == 1000:   # the --bayes defaults: 2 x (500 + 500)
            a.chains, a.iter = 2, 500
        main_scale(a)
        return
    print(f"{a.chains} chains x ({a.iter} warmup + {a.iter} draws), seed {a.seed}")
    head = (f"{'case':16} {'program':9} {'compile s':>9} {'sample s':>9} {'post s':>7} "
            f"{'total s':>8} {'minESS':>7} {'ESS/s':>8} {'div':>4} {'leapfrog':>8}")
    print(head)
    print("-" * len(head))
    for name, formula, ds, joint_kw in CASES:
        data = load(ds)
        res = {}
        for program in ("marginal", "joint"):
            r = res[program] = run(formula, data, program, a.chains, a.iter, a.seed, joint_kw)
            print(f"{name:16} {program:9} {r['compile']:9.2f} {r['sampling']:9.2f} "
                  f"{r['post']:7.2f} {r['total']:8.2f} {r['min_ess']:7.0f} {r['ess_s']:8.1f} "
                  f"{r['div']:4d} {r['leapfrog']:8.1f}", flush=True)
        print(f"{'':16} ESS/s ratio marginal / joint: "
              f"{res['marginal']['ess_s'] / res['joint']['ess_s']:.1f}x")


if __name__ == "__main__":
    main()
