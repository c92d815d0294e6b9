"""Posterior predictions of a NUTS fit, computed in numpy from the draws.

* ``linpred``: draws of the linear predictor (link scale);
* ``epred``: draws of the expected response (inverse link applied);
* ``predict``: posterior predictive draws (the family's noise added);
* ``predictive_interval``: central intervals of the predictive draws.

Each returns an array (n_draws, n_rows), draws in chain order, or with
``summary=True`` a DataFrame with one row per data row (Estimate = mean,
Est.Error = sd and quantiles, brms's layout).

Group-level effects follow lme4's ``re_form`` as the ML fits do: None = all
terms, "~0" / NaN = none, e.g. "~(1|school)" = only those grouping factors.
Levels unseen in training are an error unless ``allow_new_levels=True``;
their effects then follow ``sample_new_levels`` (brms's semantics):

* "gaussian" (default): per draw, a new effect from N(0, Sigma) of that draw
  (sd and correlation of the term), one per new level, shared by its rows;
* "uncertainty": per draw, the effect of a randomly chosen training level;
* "old_levels": each new level takes the draws of one randomly chosen training level;
* None / "none": zero (the population-level prediction, as the ML fits).

Binomial models: ``epred`` is the success probability unless ``trials`` is
given (an array, or the name of a column of newdata), when it is the expected
number of successes ``trials * p`` (brms's posterior_epred). ``predict``
draws successes and needs the trials: the training trials, a ``trials``
argument, or newdata holding the cbind(successes, failures) columns.
Weights play no part in predictions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import BayesmixError, DataError

NEW_LEVEL_MODES = ("gaussian", "uncertainty", "old_levels", "none")


# ---------------------------------------------------------------- pieces


def _draw_index(total: int, ndraws: int | None) -> np.ndarray:
    if ndraws is None or ndraws >= total:
        return np.arange(total)
    if ndraws < 1:
        raise BayesmixError(f"ndraws must be >= 1, got {ndraws}")
    return np.unique(np.linspace(0, total - 1, int(ndraws)).round().astype(int))


def _flat(arr: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    return arr.reshape((-1,) + arr.shape[2:])


def new_level_mode(mode: Any) -> str:
    if mode is None or mode is False:
        return "none"
    if mode not in NEW_LEVEL_MODES:
        raise BayesmixError(f"unknown sample_new_levels {mode!r}; choose one of "
                            f"{', '.join(map(repr, NEW_LEVEL_MODES))} or None")
    return mode


def _rows(fit, newdata, groups, allow_new_levels):
    """X, offset and per-term (index, Z, labels) of the rows to predict."""
    design = fit.design
    if newdata is None:
        terms = [(t.index, t.Z, None) for t in design.terms]
        return design.X, design.offset, terms, design.n
    from ..design.factors import new_group_labels
    from ..design.newdata import design_for_newdata
    # new levels are checked below for the terms included only (lme4 ignores the rest)
    nd = design_for_newdata(design, newdata, allow_new_levels=True, random=bool(groups))
    terms = []
    for t, nt in zip(design.terms, nd.terms):
        labels = None
        if t.group in groups and np.any(nt.index < 0):
            labels = np.asarray(new_group_labels(newdata, t.group), dtype=object)
            if not allow_new_levels:
                new = sorted(set(labels[nt.index < 0]))
                raise DataError(
                    f"new level(s) {', '.join(map(repr, new[:10]))}"
                    f"{' ...' if len(new) > 10 else ''} of grouping factor {t.group!r} not in "
                    "the training data; pass allow_new_levels=True (and sample_new_levels) "
                    "to predict them")
        terms.append((nt.index, nt.Z, labels))
    return nd.X, nd.offset, terms, nd.n


def _new_effects(fit, k: int, t, r: np.ndarray, n_new: int, mode: str, sel: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Effects (S, n_new, p) of n_new new levels of term k (1-based) per draw."""
    S, n_levels, p = r.shape
    if mode == "none":
        return np.zeros((S, n_new, p))
    if mode == "uncertainty":
        pick = rng.integers(n_levels, size=(S, n_new))
        return r[np.arange(S)[:, None], pick]
    if mode == "old_levels":
        pick = rng.integers(n_levels, size=n_new)
        return r[:, pick]
    sd = _flat(fit.draws(f"sd_{k}"))[sel].reshape(S, p)
    z = rng.standard_normal((S, n_new, p))
    if t.correlated and p > 1:
        cor = _flat(fit.draws(f"Cor_{k}"))[sel].reshape(S, p, p)
        L = np.linalg.cholesky(cor + 1e-12 * np.eye(p))
        scale = sd[:, :, None] * L  # diag(sd) L: Cov = diag(sd) Cor diag(sd)
        return np.einsum("sij,snj->sni", scale, z)
    return z * sd[:, None, :]


def linpred_draws(fit, newdata: pd.DataFrame | None = None, re_form: Any = None,
                  allow_new_levels: bool = False, sample_new_levels: Any = "gaussian",
                  seed: int | None = None, ndraws: int | None = None) -> np.ndarray:
    """Draws (n_draws, n_rows) of the linear predictor, offsets included."""
    from ..design.reform import re_form_groups
    design = fit.design
    groups = re_form_groups(re_form, design)
    mode = new_level_mode(sample_new_levels)
    rng = np.random.default_rng(seed)
    X, offset, terms, n = _rows(fit, newdata, groups, allow_new_levels)
    b_all = _flat(fit.named_draws().posterior["b"])
    sel = _draw_index(b_all.shape[0], ndraws)
    b = b_all[sel]
    eta = np.asarray(b @ np.asarray(X, dtype=float).reshape(n, -1).T)  # (S, n)
    if offset is not None:
        eta = eta + np.asarray(offset, dtype=float)[None, :]
    for k, (t, (index, Z, labels)) in enumerate(zip(design.terms, terms), 1):
        if t.group not in groups:
            continue
        r = _flat(fit.draws(f"r_{k}"))[sel]  # (S, n_levels, p)
        Z = np.asarray(Z, dtype=float).reshape(n, -1)
        known = index >= 0
        if np.all(known):
            eta += np.einsum("snp,np->sn", r[:, index], Z)
            continue
        eta[:, known] += np.einsum("snp,np->sn", r[:, index[known]], Z[known])
        new_labels, which = np.unique(labels[~known].astype(str), return_inverse=True)
        u = _new_effects(fit, k, t, r, len(new_labels), mode, sel, rng)  # (S, L, p)
        eta[:, ~known] += np.einsum("snp,np->sn", u[:, which], Z[~known])
    return eta


def _trials(fit, newdata: pd.DataFrame | None, trials: Any, required: bool) -> np.ndarray | None:
    design = fit.design
    n_rows = design.n if newdata is None else len(newdata)
    if trials is not None:
        if isinstance(trials, str):
            source = design.data if newdata is None else newdata
            if trials not in source.columns:
                raise DataError(f"trials: no column {trials!r} in the data")
            t = source[trials].to_numpy(dtype=float)
        else:
            t = np.broadcast_to(np.asarray(trials, dtype=float), (n_rows,)).copy()
        if t.shape != (n_rows,):
            raise DataError(f"trials must have one value per row ({n_rows}), got {t.shape}")
        if np.any(t < 0) or np.any(t != np.round(t)):
            raise DataError("trials must be non-negative whole numbers")
        return t
    if design.family.name == "bernoulli":
        return np.ones(n_rows)
    if not required:
        return None
    if newdata is None:
        return np.asarray(design.trials, dtype=float)
    cb = design.formula.cbind
    if cb is not None:
        from ..design.columns import evaluate_column as _evaluate, numeric_column as _numeric
        try:
            succ = _numeric(_evaluate(cb[0], newdata, "response"), cb[0], "successes")
            fail = _numeric(_evaluate(cb[1], newdata, "response"), cb[1], "failures")
            return np.asarray(succ + fail, dtype=float)
        except Exception:
            pass
    if design.trials is not None and np.all(np.asarray(design.trials) == 1):
        return np.ones(n_rows)  # 0/1 response fitted as binomial
    raise DataError("binomial predictions for new data need the number of trials: pass "
                    "trials= (an array or a column name) or include the cbind() columns")


def epred_draws(fit, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False, sample_new_levels: Any = "gaussian",
                seed: int | None = None, ndraws: int | None = None,
                trials: Any = None) -> np.ndarray:
    """Draws (n_draws, n_rows) of the expected response (inverse link applied)."""
    eta = linpred_draws(fit, newdata, re_form, allow_new_levels, sample_new_levels, seed,
                        ndraws)
    mu = fit.design.family.linkinv(eta)
    if fit.design.family.name == "binomial" and trials is not None:
        mu = mu * _trials(fit, newdata, trials, required=True)[None, :]
    return mu


def predict_draws(fit, newdata: pd.DataFrame | None = None, re_form: Any = None,
                  allow_new_levels: bool = False, sample_new_levels: Any = "gaussian",
                  seed: int | None = None, ndraws: int | None = None,
                  trials: Any = None) -> np.ndarray:
    """Posterior predictive draws (n_draws, n_rows): the family's distribution around
    each draw's expected response (binomial: successes out of the trials)."""
    rng = np.random.default_rng(seed)
    # one generator for both stages: new-level effects first, then the noise
    sub_seed = int(rng.integers(2 ** 63 - 1))
    eta = linpred_draws(fit, newdata, re_form, allow_new_levels, sample_new_levels, sub_seed,
                        ndraws)
    fam = fit.design.family
    mu = fam.linkinv(eta)
    post = fit.named_draws().posterior
    sel = _draw_index(_flat(post["b"]).shape[0], ndraws)
    # the family parameter of each draw (sigma, phi, shape), one row per draw
    phi = (None if fam.dispersion is None
           else _flat(post[fam.dispersion]).reshape(-1)[sel][:, None])
    t = (_trials(fit, newdata, trials, required=True)
         if fam.name in ("binomial", "bernoulli") else 1.0)
    return fam.draw(rng, mu, t, phi)


# ---------------------------------------------------------------- summaries


def summarise_draws(draws: np.ndarray, probs: Sequence[float] = (0.025, 0.975),
                    index=None) -> pd.DataFrame:
    """One row per column of draws: Estimate (mean), Est.Error (sd), quantiles."""
    d = np.asarray(draws, dtype=float)
    out = {"Estimate": d.mean(axis=0),
           "Est.Error": d.std(axis=0, ddof=1) if d.shape[0] > 1 else np.zeros(d.shape[1])}
    for p in probs:
        out[f"Q{100 * p:g}"] = np.quantile(d, p, axis=0)
    return pd.DataFrame(out, index=index)


def _index(fit, newdata):
    return fit.design.data.index if newdata is None else newdata.index


def predictive_interval(fit, prob: float = 0.9, newdata: pd.DataFrame | None = None,
                        **kwargs) -> pd.DataFrame:
    """Central `prob` intervals of the posterior predictive draws, one row per data
    row, columns "5%" and "95%" for prob=0.9 (rstanarm's predictive_interval)."""
    if not 0 < prob < 1:
        raise BayesmixError(f"prob must be in (0, 1), got {prob}")
    draws = predict_draws(fit, newdata, **kwargs)
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    return pd.DataFrame({f"{100 * lo:g}%": np.quantile(draws, lo, axis=0),
                         f"{100 * hi:g}%": np.quantile(draws, hi, axis=0)},
                        index=_index(fit, newdata))


def maybe_summary(fit, draws: np.ndarray, newdata, summary: bool,
                  probs: Sequence[float]) -> np.ndarray | pd.DataFrame:
    if not summary:
        return draws
    return summarise_draws(draws, probs, index=_index(fit, newdata))


__all__ = ["NEW_LEVEL_MODES", "epred_draws", "linpred_draws", "maybe_summary",
           "predict_draws", "predictive_interval", "summarise_draws"]
