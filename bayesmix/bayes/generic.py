"""The generic joint program: one compiled Stan program for every joint (brms-style) model.

``stan/glmm_joint.stan`` is rstanarm's approach to the per-formula program that
`bayesmix.stancode.joint_program` generates: the term structure (any number of group-level
terms, each with any number of correlated or uncorrelated, centred or non-centred
coefficients), the family and link, offsets, binomial trials, weights and every prior (codes
and arguments) arrive as data. It is compiled once (``bayesmix build`` or the first use) and
then a new formula costs no compile.

It computes the same log density as the generated program -- same parameterisation
(non-centred ``z`` by default, ``sd``, the Cholesky factor of each correlated term's
correlation matrix through Stan's own transform, centred X with ``Intercept`` restored as
``b_Intercept``), same default and user priors with the same constants dropped, the same
``*_glm`` likelihoods -- so at identical parameter values ``lp__`` and ``log_lik`` agree to
rounding. Its variables are flat (``sd_all``, ``z_all``, ``cpc_raw``, ``r_all``,
``Cor_all``, arrays of size 0/1 for ``Intercept``, ``b_Intercept``, ``sigma``, ``phi``,
``shape``); `GenericPosteriorFit.draws` is the one place that maps them back to the generated
program's names (``sd_k``, ``z_k``, ``r_k``, ``L_k``, ``Cor_k``, scalars), so every results
object, prediction and export works unchanged.

Which program runs (`choose_joint_program`): ``program="joint"`` / ``"auto"`` use the generic
program unless it cannot express the model; ``"generic"`` insists on it; ``"generated"`` forces
the per-formula program. The fallback reasons are `Fallback` codes (``FALLBACK_CODES``):

* ``"family_link"`` -- a family / link pair outside the generic program's tables
  (``FAMILY_CODES`` x ``LINK_CODES`` with the links of ``GENERIC_LINKS``); every pair
  `bayesmix.families` accepts today is covered, so this guards future families only.
* ``"prior"`` -- a user prior whose distribution has no prior code (every distribution
  `bayesmix.prior` accepts today has one, including lkj for ``cor``).
* ``"forced"`` -- ``program="generated"``.

Centred terms (``centered=``), weights, offsets, trials, models without an intercept and
models without group-level terms all run on the generic program.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable

import numpy as np

from ..errors import BayesmixError
from ..families import FAMILIES, LINKS, families_for
from ..priors import PRIOR_CODES, Prior, resolve_priors, slope_names
from ..priors import prior_data as generic_priors  # the generic program's prior rows
from .fit import PosteriorFit, check_sampler_args

GENERIC_PROGRAM = "glmm_joint.stan"
GENERIC_NAME = "glmm_joint"
# the codes of stan/glmm_joint.stan, from bayesmix.families
FAMILY_CODES = {name: spec.joint_code for name, spec in FAMILIES.items()}
LINK_CODES = {name: link.code for name, link in LINKS.items()}
GENERIC_LINKS = families_for("nuts_joint")
FAMILY_LINK, PRIOR, FORCED = "family_link", "prior", "forced"  # the Fallback codes
FALLBACK_CODES = {
    "family_link": "a family / link pair the generic program does not have",
    "prior": "a user prior distribution without a prior code in the generic program",
    "forced": "program='generated' asked for the per-formula program",
}
JOINT_PROGRAMS = ("auto", "joint", "generic", "generated")


@dataclass(frozen=True)
class Fallback:
    """Why the generated per-formula program ran instead of the generic one."""

    code: str      # one of FALLBACK_CODES
    detail: str    # for people: what exactly

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def generic_code() -> str:
    """The generic joint program, self-contained (what is compiled and exported)."""
    from ..engine import stan_file
    return stan_file(GENERIC_PROGRAM)


def generic_unsupported(design, priors: Iterable[Prior] = ()) -> Fallback | None:
    """Why the generic program cannot express a model (a `Fallback`), or None."""
    fam = design.family
    if not fam.supports("nuts_joint"):
        return Fallback(FAMILY_LINK, f"no generic joint program for {fam}")
    for p in priors:
        if p.cls != "cor" and p.dist not in PRIOR_CODES:
            return Fallback(PRIOR, f"{p} has no prior code in the generic program")
    return None


def choose_joint_program(design, priors: Iterable[Prior] = (), program: str = "joint"
                         ) -> tuple[str, Fallback | None]:
    """("generic" | "generated", the Fallback when the generated program had to be used).

    program: "joint" or "auto" (generic unless it cannot express the model), "generic"
    (an error when it cannot), "generated" (the per-formula program)."""
    program = (program or "joint").lower()
    if program not in JOINT_PROGRAMS:
        raise BayesmixError(f"unknown joint program {program!r}; choose one of "
                            f"{', '.join(JOINT_PROGRAMS)}")
    if program == "generated":
        return "generated", Fallback(FORCED, "program='generated'")
    why = generic_unsupported(design, tuple(priors))
    if why is None:
        return "generic", None
    if program == "generic":
        raise BayesmixError(f"program='generic' is not available: {why}")
    return "generated", why


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class GenericLayout:
    """Where each term's pieces sit in the generic program's flat vectors (0-based)."""

    p: tuple[int, ...]
    levels: tuple[int, ...]
    correlated: tuple[bool, ...]
    centered: tuple[bool, ...]

    def _starts(self, sizes) -> list[int]:
        out, pos = [], 0
        for s in sizes:
            out.append(pos)
            pos += s
        return out

    @property
    def sd_start(self) -> list[int]:
        return self._starts(self.p)

    @property
    def z_start(self) -> list[int]:
        return self._starts(p * n for p, n in zip(self.p, self.levels))

    @property
    def cpc_start(self) -> list[int]:
        return self._starts(p * (p - 1) // 2 if c else 0 for p, c in zip(self.p,
                                                                        self.correlated))

    @property
    def cor_start(self) -> list[int]:
        return self._starts(p * p if c else 0 for p, c in zip(self.p, self.correlated))


def generic_layout(design, centered: Any = False) -> GenericLayout:
    from ..stancode import structure_of
    s = structure_of(design, centered)
    return GenericLayout(tuple(t.p for t in design.terms),
                         tuple(t.n_levels for t in design.terms),
                         tuple(sh.correlated for sh in s.terms),
                         tuple(sh.centered for sh in s.terms))


def generic_stan_data(design, priors: Iterable[Prior] = (), prior_only: bool = False,
                      save_log_lik: bool = True, save_y_rep: bool = True,
                      centered: Any = False) -> dict:
    """The data of ``stan/glmm_joint.stan`` for a design, its priors and centred terms."""
    fam = design.family
    n = design.n
    lay = generic_layout(design, centered)
    discrete = fam.spec.discrete
    y = np.asarray(design.y)
    X = np.asarray(design.X, dtype=float).reshape(n, -1)
    names = tuple(design.X_names)
    data: dict = {
        "N": n,
        "Y": np.rint(y).astype(np.int64) if discrete else y.astype(float),
        **fam.stan_codes("joint"),
        "trials": (np.rint(np.asarray(design.trials)).astype(np.int64)
                   if fam.name == "binomial" else np.ones(n, dtype=np.int64)),
        "has_weights": int(design.weights is not None),
        "weights": (np.asarray(design.weights, dtype=float) if design.weights is not None
                    else np.ones(n)),
        "K": X.shape[1],
        "X": X,
        "has_intercept": int(bool(names) and names[0] == "(Intercept)"),
        "has_offset": int(design.offset is not None),
        "offsets": (np.asarray(design.offset, dtype=float) if design.offset is not None
                    else np.zeros(n)),
        "n_terms": len(design.terms),
        "p_term": list(lay.p),
        "l_term": list(lay.levels),
        "cor_term": [int(c) for c in lay.correlated],
        "cen_term": [int(c) for c in lay.centered],
        "J": (np.stack([np.asarray(t.index, dtype=np.int64) + 1 for t in design.terms])
              if design.terms else np.zeros((0, n), dtype=np.int64)),
        "R": int(sum(lay.p)),
        "Z": (np.column_stack([np.asarray(t.Z, dtype=float).reshape(n, -1)
                               for t in design.terms])
              if design.terms else np.zeros((n, 0))),
    }
    data.update(generic_priors(design, priors))
    data["prior_only"] = int(bool(prior_only))
    data["save_log_lik"] = int(bool(save_log_lik))
    data["save_y_rep"] = int(bool(save_y_rep))
    return data


# ---------------------------------------------------------------- inits


def cholesky_corr_free(L: np.ndarray) -> np.ndarray:
    """Stan's cholesky_corr_free: the unconstrained values of a correlation Cholesky factor
    (inverse of `bayesmix.bayes.marginal.cholesky_corr`)."""
    L = np.asarray(L, dtype=float)
    K = L.shape[0]
    out = []
    for i in range(1, K):
        out.append(np.arctanh(L[i, 0]))
        ss = L[i, 0] ** 2
        for j in range(1, i):
            out.append(np.arctanh(L[i, j] / np.sqrt(1 - ss)))
            ss += L[i, j] ** 2
    return np.asarray(out, dtype=float)


def generic_inits(design, inits: dict | None, centered: Any = False) -> dict | None:
    """Starting values in the generated program's names (``Intercept``, ``b``, ``sd_k``,
    ``z_k`` or ``r_k`` (centred), ``L_k``, family parameter) as the generic program's.
    Names the generic program already uses pass through unchanged."""
    if inits is None:
        return None
    lay = generic_layout(design, centered)
    out: dict = {}
    inits = dict(inits)
    for key in ("sd_all", "z_all", "cpc_raw", "b"):
        if key in inits:
            out[key] = np.asarray(inits.pop(key), dtype=float)
    for key in ("Intercept", "sigma", "phi", "shape"):
        if key in inits:
            out[key] = np.atleast_1d(np.asarray(inits.pop(key), dtype=float))
    K = len(design.terms)
    if K and any(f"sd_{k}" in inits for k in range(1, K + 1)):
        sd, z, cpc = [], [], []
        for k, t in enumerate(design.terms, 1):
            p, nl = t.p, t.n_levels
            sd.append(np.asarray(inits.pop(f"sd_{k}", np.ones(p)), dtype=float).reshape(p))
            if lay.centered[k - 1]:
                r = np.asarray(inits.pop(f"r_{k}", np.zeros((nl, p))), dtype=float)
                z.append(r.reshape(nl, p).reshape(-1))
            else:
                zk = np.asarray(inits.pop(f"z_{k}", np.zeros((p, nl))), dtype=float)
                z.append(zk.reshape(p, nl).reshape(-1, order="F"))
            if lay.correlated[k - 1]:
                cpc.append(cholesky_corr_free(inits.pop(f"L_{k}", np.eye(p))))
            else:
                inits.pop(f"L_{k}", None)
        out.setdefault("sd_all", np.concatenate(sd))
        out.setdefault("z_all", np.concatenate(z))
        out.setdefault("cpc_raw", np.concatenate(cpc) if cpc else np.zeros(0))
    out.update(inits)  # anything else, unchanged
    return out


# ---------------------------------------------------------------- program and fit


@dataclass(frozen=True, eq=False)
class GenericProgram:
    """The generic joint program as one fit used it (shaped like `JointProgram` where fits
    look: code, annotated, structure, slots, name)."""

    code: str
    annotated: str
    structure: Any
    slots: tuple

    @property
    def name(self) -> str:
        return GENERIC_NAME

    def __str__(self) -> str:
        return self.annotated


def generic_program(design, priors: Iterable[Prior] = (), centered: Any = False
                    ) -> GenericProgram:
    from ..stancode import structure_of
    slots = tuple(resolve_priors(design, tuple(priors)))  # validates the priors
    code = generic_code()
    lay = generic_layout(design, centered)
    lines = [f"Formula: {design.formula.text.strip()}", f"Family:  {design.family}",
             f"Data:    {design.n} observations",
             "Generic joint program (stan/glmm_joint.stan): structure, family, link and "
             "priors are data.", "Stan names:"]
    if "(Intercept)" in design.X_names:
        lines.append("  Intercept[1] = (Intercept) at the mean of X; b_Intercept[1] on X's "
                     "own scale")
    if slope_names(design):
        lines.append("  b = (" + ", ".join(slope_names(design)) + ")")
    for k, t in enumerate(design.terms, 1):
        s, z = lay.sd_start[k - 1], lay.z_start[k - 1]
        lines.append(f"  term {k} {t.group} ({', '.join(t.coef_names)}): "
                     f"sd_all[{s + 1}:{s + t.p}], z_all / r_all[{z + 1}:{z + t.p * t.n_levels}]"
                     + (", correlated" if lay.correlated[k - 1] else "")
                     + (", centred" if lay.centered[k - 1] else ""))
    annotated = "\n".join("// " + line for line in lines) + "\n" + code
    return GenericProgram(code, annotated, structure_of(design, centered), slots)


class GenericPosteriorFit(PosteriorFit):
    """A NUTS fit of the generic joint program. `draws` serves the generated program's
    names (``Intercept``, ``b_Intercept``, ``sd_k``, ``z_k``, ``r_k``, ``L_k``, ``Cor_k``,
    ``sigma`` / ``phi`` / ``shape``) from the generic program's flat variables: the one place
    where the two layouts meet. `stan_code` is the exact program that ran."""

    program_kind = "generic"
    fallback = None

    @property
    def stan_code(self) -> str:
        """The program that ran, byte for byte (the annotated one: `program.annotated`)."""
        return self.program.code

    @cached_property
    def layout(self) -> GenericLayout:
        shapes = self.program.structure.terms
        return GenericLayout(tuple(t.p for t in self.design.terms),
                             tuple(t.n_levels for t in self.design.terms),
                             tuple(sh.correlated for sh in shapes),
                             tuple(sh.centered for sh in shapes))

    def _raw(self, name: str, size: int) -> np.ndarray:
        if size == 0:
            return np.zeros((self.chains, self.ndraws, 0))
        return PosteriorFit.draws(self, name)

    @cached_property
    def _mapped(self) -> dict[str, np.ndarray]:
        return {}

    def _map(self, name: str) -> np.ndarray | None:
        lay = self.layout
        base, _, num = name.rpartition("_")
        if name in ("Intercept", "b_Intercept", "sigma", "phi", "shape"):
            return PosteriorFit.draws(self, name)[..., 0]
        if name in ("y_rep",) and self.stan_data.get("family") in (2, 3, 4, 5):
            return np.rint(PosteriorFit.draws(self, name)).astype(np.int64)
        if not num.isdigit() or base not in ("sd", "z", "r", "L", "Cor"):
            return None
        k = int(num)
        if not 1 <= k <= len(lay.p):
            raise BayesmixError(f"no Stan variable {name!r} in this fit")
        j = k - 1
        p, nl = lay.p[j], lay.levels[j]
        C, D = self.chains, self.ndraws
        if base == "sd":
            s = lay.sd_start[j]
            return self._raw("sd_all", sum(lay.p))[..., s:s + p]
        if base in ("z", "r"):
            z0 = lay.z_start[j]
            n_z = sum(a * b for a, b in zip(lay.p, lay.levels))
            block = self._raw("z_all" if base == "z" else "r_all", n_z)[..., z0:z0 + p * nl]
            block = block.reshape(C, D, nl, p)         # level by level
            if base == "r":
                return block
            if lay.centered[j]:
                raise BayesmixError(f"no Stan variable {name!r}: term {k} is centred")
            return np.swapaxes(block, -1, -2)           # z_k is M_k x N_k
        if not lay.correlated[j]:
            raise BayesmixError(f"no Stan variable {name!r}: term {k} is uncorrelated")
        c0 = lay.cor_start[j]
        n_cor = sum(a * a for a, c in zip(lay.p, lay.correlated) if c)
        cor = self._raw("Cor_all", n_cor)[..., c0:c0 + p * p].reshape(C, D, p, p)
        cor = np.swapaxes(cor, -1, -2)                  # column-major (symmetric anyway)
        if base == "Cor":
            return cor
        return np.linalg.cholesky(cor)

    def draws(self, name: str) -> np.ndarray:
        """A variable's draws as ``(chain, draw, *shape)``, under the generated program's names."""
        cache = self._mapped
        if name not in cache:
            mapped = self._map(name)
            cache[name] = PosteriorFit.draws(self, name) if mapped is None else mapped
        return cache[name]

    def export_meta(self) -> dict:
        meta = super().export_meta()
        meta["program"] = "generic"
        return meta

    @classmethod
    def from_export(cls, design, meta: dict, run, stan_data: dict) -> "GenericPosteriorFit":
        from ..priors import prior
        priors = tuple(prior(**p) for p in meta["priors"])
        program = generic_program(design, priors, centered=meta.get("centered", []))
        return cls(design, priors, run, program, stan_data, inits=meta.get("inits"))


def fit_generic(design, priors: Iterable[Prior] = (), *, chains: int = 4,
                iter_warmup: int = 1000, iter_sampling: int = 1000, seed: int | None = None,
                adapt_delta: float = 0.8, max_treedepth: int = 10, metric: str = "diag_e",
                thin: int = 1, prior_only: bool = False, show_progress: bool | None = None,
                engine: str = "auto", inits: dict | None = None, save_log_lik: bool = True,
                save_y_rep: bool = True, centered: Any = False,
                output_dir: str | None = None, diagnostics: bool = True) -> GenericPosteriorFit:
    """Sample the joint posterior with the generic program; arguments as `fit_nuts`
    (inits may use the generated program's names: `generic_inits` translates them)."""
    from ..stancode import joint_inits
    from .fit import sample_program
    check_sampler_args(chains, iter_warmup, iter_sampling, thin, adapt_delta, metric)
    priors = tuple(priors)
    why = generic_unsupported(design, priors)
    if why is not None:
        raise BayesmixError(f"the generic joint program cannot run this model: {why}")
    program = generic_program(design, priors, centered)
    data = generic_stan_data(design, priors, prior_only=prior_only,
                             save_log_lik=save_log_lik, save_y_rep=save_y_rep,
                             centered=centered)
    if inits is None:
        inits = joint_inits(design, priors, centered)
    return sample_program(GenericPosteriorFit, design, priors, program, data,
                          inits=generic_inits(design, inits, centered), engine=engine,
                          diagnostics=diagnostics, chains=chains, iter_warmup=iter_warmup,
                          iter_sampling=iter_sampling, seed=seed, adapt_delta=adapt_delta,
                          max_treedepth=max_treedepth, metric=metric, thin=thin,
                          show_progress=show_progress, output_dir=output_dir)


__all__ = ["FALLBACK_CODES", "FAMILY_CODES", "Fallback", "GENERIC_PROGRAM", "GenericLayout",
           "GenericPosteriorFit", "GenericProgram", "LINK_CODES", "choose_joint_program",
           "cholesky_corr_free", "fit_generic", "generic_code", "generic_inits",
           "generic_layout", "generic_priors", "generic_program", "generic_stan_data",
           "generic_unsupported"]
