"""The `bayesmix` command line: fit, stancode, demo."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from .errors import BayesmixError

FAMILY_HELP = ("gaussian, binomial, poisson, Gamma, negbinomial, or a distributional family: "
               "student, lognormal, beta, beta_binomial, cumulative, zero_inflated_poisson, "
               "zero_inflated_negbinomial, hurdle_poisson, hurdle_negbinomial. A cumulative "
               "(ordinal) response in a CSV file is whole numbers: its distinct values are "
               "the ordered categories, in numeric order (e.g. 1 < 2 < 3 < 4 < 5)")

DEMO_FORMULAS = (
    "extro ~ open + agree + social + (1 | school)",
    "extro ~ open + agree + social + (1 | school) + (1 | class)",
    "extro ~ open + agree + social + (1 | school/class)",
    "extro ~ open + agree + social + (1 + open | school/class)",
)


def _read_data(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise BayesmixError(f"data file {path!r} not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BayesmixError(f"cannot read {path!r} as CSV: {exc}") from None


def _formula(args: argparse.Namespace):
    """The formula string, or bf(formula, name=formula, ...) with the --dpar formulas."""
    if not args.dpar:
        return args.formula
    from .formula import bf
    dpars: dict[str, str] = {}
    for item in args.dpar:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name or not text.strip():
            raise BayesmixError(f"--dpar {item!r} is not NAME=FORMULA; write e.g. "
                                "--dpar 'zi=~ x + (1 | g)'")
        if name in dpars:
            raise BayesmixError(f"--dpar {name} is given twice ({dpars[name]!r} and "
                                f"{text.strip()!r})")
        dpars[name] = text.strip()
    return bf(args.formula, **dpars)


def _model(args: argparse.Namespace):
    from .model import Model
    return Model(_formula(args), _read_data(args.data), family=args.family, link=args.link)


def _fit(args: argparse.Namespace) -> int:
    model = _model(args)
    if args.method == "nuts":
        fit = model.sample(chains=args.chains, iter_warmup=args.iter_warmup,
                           iter_sampling=args.iter_sampling, seed=args.seed)
    elif args.method == "laplace":
        fit = model.laplace(draws=args.draws, seed=args.seed)
    else:
        fit = model.fit(method=args.method)
    print(fit.summary())
    if args.out:
        fit.export(args.out)
        print(f"\nexported to {args.out}")
    return 0


def _stancode(args: argparse.Namespace) -> int:
    model = _model(args)
    print(model.stan_code(args.method))
    return 0


def _build(args: argparse.Namespace) -> int:
    from .engine.build import build
    took = build(args.programs or None, jobs=args.jobs)
    for name, seconds in took.items():
        print(f"{name:16s} {'compiled in %.0f s' % seconds if seconds else 'cached'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .datasets import load
    from .engine.build import build
    from .engine.toolchain import bundled_toolchain, wait_for
    from .model import Model
    school = load("lmmdata")
    print("bayesmix demo: the school tutorial's mixed models on the bundled lmmdata "
          "(1200 students, 6 schools x 4 classes)\n", flush=True)
    # First run: the ML program compiles at once beside the driver (the first results), the
    # posterior's program as soon as the driver frees the other core.
    nuts_program = None
    if not args.no_nuts:
        background = ThreadPoolExecutor(max_workers=1)
        driver_build = bundled_toolchain().start()
        nuts_program = background.submit(lambda: (driver_build.result(),
                                                  build(["lmm_marginal"])))
        background.shutdown(wait=False)
    build(["lmer"])
    for formula in DEMO_FORMULAS:
        model = Model(formula, school)
        t = time.perf_counter()
        fit = model.fit(method="reml")
        print(f"=== REML (Stan L-BFGS, {time.perf_counter() - t:.2f} s incl. any compile) ===")
        print(fit.summary(), "\n")
    if nuts_program is None:
        return 0
    wait_for(nuts_program)
    model = Model(DEMO_FORMULAS[2], school)
    t = time.perf_counter()
    post = model.sample(chains=4, iter_warmup=args.iter_warmup, iter_sampling=args.iter_sampling,
                        seed=args.seed)
    print(f"=== NUTS, 4 chains ({time.perf_counter() - t:.1f} s incl. any compile) ===")
    print(post.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayesmix", description="lme4-syntax multilevel models "
                                "compiled to Stan: ML/REML through Stan's optimizer, or NUTS.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser, methods: tuple[str, ...], default: str) -> None:
        sp.add_argument("formula", help="lme4 formula, e.g. 'y ~ x + (1 | g)'")
        sp.add_argument("--data", required=True, help="CSV file with the model's columns")
        sp.add_argument("--family", default="gaussian", help=FAMILY_HELP)
        sp.add_argument("--link", default=None)
        sp.add_argument("--dpar", action="append", default=[], metavar="NAME=FORMULA",
                        help="a formula for one distributional parameter (brms's bf()), "
                        "e.g. --dpar 'zi=~ spp + mined' or --dpar 'sigma=~ x + (1 | g)'; "
                        "repeat for several")
        sp.add_argument("--method", choices=methods, default=default)

    f = sub.add_parser("fit", help="fit a model and print its summary")
    model_args(f, ("reml", "ml", "nuts", "laplace"), "reml")
    f.add_argument("--out", help="export the fit as a reproducible Stan bundle to this folder")
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--iter-warmup", type=int, default=1000)
    f.add_argument("--iter-sampling", type=int, default=1000)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--draws", type=int, default=1000,
                   help="--method laplace: draws from the normal approximation")
    f.set_defaults(run=_fit)

    s = sub.add_parser("stancode", help="print the generated Stan program")
    model_args(s, ("reml", "ml", "nuts"), "nuts")
    s.set_defaults(run=_stancode)

    b = sub.add_parser("build", help="compile the Stan toolchain and the generic programs "
                       "ahead of time (once per machine; for CI images and clusters)")
    b.add_argument("programs", nargs="*", help="only these programs (default: all)")
    b.add_argument("--jobs", type=int, default=None, help="parallel compiles (default: cores)")
    b.set_defaults(run=_build)

    d = sub.add_parser("demo", help="the school tutorial's mixed models, REML and NUTS")
    d.add_argument("--no-nuts", action="store_true", help="skip the Bayesian fit")
    d.add_argument("--iter-warmup", type=int, default=1000)
    d.add_argument("--iter-sampling", type=int, default=1000)
    d.add_argument("--seed", type=int, default=1)
    d.set_defaults(run=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "method", None) == "reml" and (
            getattr(args, "family", "gaussian") != "gaussian" or getattr(args, "dpar", None)):
        args.method = "ml"  # REML is for gaussian models without parameter formulas
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("bayesmix: interrupted", file=sys.stderr)
        return 130
    except BayesmixError as exc:
        print(f"bayesmix: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else still reaches the user as one line
        print(f"bayesmix: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
