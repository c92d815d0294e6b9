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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--iter", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
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
