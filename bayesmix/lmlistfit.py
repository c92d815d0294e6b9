"""One lm/glm per group: lme4's lmList, or plyr's dlply(data, .(g1, g2), glm)."""

from __future__ import annotations

import difflib
import itertools
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .design import build_design
from .errors import BayesmixError, DataError, FormulaError, user_stacklevel
from .families import get_family
from .glmfit import fit_glm
from .results.format import html_pre
from .results.glm import GlmFit, format1, format_real, print_matrix


def _split_bar(formula: str) -> tuple[str, list[str] | None]:
    """'y ~ x | g1:g2' -> ('y ~ x', ['g1', 'g2']); no top-level bar -> (formula, None)."""
    depth = 0
    bar = -1
    for i, ch in enumerate(formula):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            bar = i
    if bar < 0:
        return formula, None
    group = formula[bar + 1:].strip()
    if not group or "|" in formula[:bar].replace("||", ""):
        raise FormulaError(f"lmlist formula {formula!r}: expected 'response ~ terms | group'")
    names = [g.strip().strip("`") for g in group.replace("/", ":").split(":")]
    if any(not g for g in names):
        raise FormulaError(f"cannot read the grouping factor {group!r} in {formula!r}")
    return formula[:bar].strip(), names


def _levels(values: pd.Series) -> list:
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique())
        return [c for c in values.cat.categories if c in present]
    uniq = values.dropna().unique().tolist()
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


class LmList:
    """Per-cell lm/glm fits. `fits` maps each non-empty cell (the level for one
    grouping variable, a tuple of levels for several; in factor order, first
    variable slowest) to its GlmFit; `errors` holds cells whose fit failed."""

    def __init__(self, formula: str, by: Sequence[str], fits: dict, errors: dict,
                 family: str, data_name: str | None = None):
        self.formula = formula
        self.by = list(by)
        self.fits: dict[Any, GlmFit] = fits
        self.errors: dict[Any, str] = errors
        self.family = family
        self.data_name = data_name

    # -- access ------------------------------------------------------------
    def label(self, key: Any) -> str:
        """R's label of a cell, e.g. "I:a"."""
        return ":".join(map(str, key)) if isinstance(key, tuple) else str(key)

    @property
    def labels(self) -> list[str]:
        return [self.label(k) for k in self.fits]

    def __len__(self) -> int:
        return len(self.fits)

    def __iter__(self) -> Iterator:
        return iter(self.fits)

    def items(self):
        return self.fits.items()

    def __getitem__(self, key: Any) -> GlmFit:
        if key in self.fits:
            return self.fits[key]
        for k in self.fits:
            if self.label(k) == str(key):
                return self.fits[k]
        raise KeyError(f"no fit for cell {key!r}; cells: {', '.join(self.labels[:10])}"
                       + (" ..." if len(self) > 10 else ""))

    def _index(self, keys: list) -> pd.Index:
        if len(self.by) == 1:
            return pd.Index(keys, name=self.by[0])
        return pd.MultiIndex.from_tuples(keys, names=self.by)

    # -- tables ------------------------------------------------------------
    def coef(self) -> pd.DataFrame:
        """Cells x coefficients (NaN for coefficients aliased in a cell)."""
        keys = list(self.fits)
        series = [self.fits[k].coef() for k in keys]
        cols: list[str] = []
        for s in series:
            cols += [c for c in s.index if c not in cols]
        table = pd.DataFrame([s.reindex(cols).to_numpy() for s in series], columns=cols,
                             index=self._index(keys))
        return table

    def coef_table(self) -> pd.DataFrame:
        """Tidy table: grouping columns, term, estimate, std_error, statistic, p_value."""
        rows = []
        for key, fit in self.fits.items():
            levels = key if isinstance(key, tuple) else (key,)
            ct = fit.coef_table()
            for term, r in ct.iterrows():
                rows.append((*levels, term, r.iloc[0], r.iloc[1], r.iloc[2], r.iloc[3]))
        cols = [*self.by, "term", "estimate", "std_error", "statistic", "p_value"]
        out = pd.DataFrame(rows, columns=cols)
        for col in self.by:
            out[col] = pd.Categorical(out[col], categories=list(dict.fromkeys(out[col])))
        return out

    def sigma(self) -> pd.Series:
        keys = list(self.fits)
        return pd.Series([self.fits[k].sigma() for k in keys], index=self._index(keys))

    def nobs(self) -> pd.Series:
        keys = list(self.fits)
        return pd.Series([self.fits[k].nobs() for k in keys], index=self._index(keys))

    def pooled_sigma(self) -> float:
        """sqrt(total residual deviance / total residual df) (lmList's pool = TRUE)."""
        dev = sum(f.deviance() for f in self.fits.values())
        df = sum(f.df_residual() for f in self.fits.values())
        return float(np.sqrt(dev / df)) if df > 0 else float("nan")

    # -- printing ----------------------------------------------------------
    def call(self) -> str:
        group = ":".join(self.by)
        fam = "" if self.family == "gaussian" else f", family = {self.family}"
        data = f", data = {self.data_name}" if self.data_name else ""
        return f"lmList(formula = {self.formula} | {group}{fam}{data})"

    def __str__(self) -> str:
        coefs = self.coef()
        cols = [format_real(coefs[c].to_numpy(), 7) for c in coefs.columns]
        cells = [list(row) for row in zip(*cols)]
        lines = [f"Call: {self.call()}", "Coefficients:",
                 print_matrix(cells, self.labels, [str(c) for c in coefs.columns])]
        total = sum(f.nobs() for f in self.fits.values())
        resid = sum(f.df_residual() for f in self.fits.values())
        lines.append("")
        lines.append(f"Degrees of freedom: {total} total; {resid} residual")
        if self.family == "gaussian":
            lines.append(f"Residual standard error: {format1(self.pooled_sigma()).strip()}")
        if self.errors:
            lines.append(f"Failed cells: {', '.join(self.label(k) for k in self.errors)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return html_pre(str(self))


def lmlist(formula: str, data: pd.DataFrame, by: str | Sequence[str] | None = None,
           family: str = "gaussian", link: str | None = None,
           weights: str | None = None, fitter: str | None = None,
           data_name: str | None = None, executor: Any = "serial") -> LmList:
    """Fit the same lm/glm separately in every cell of the grouping variables.

    Either lme4's syntax lmlist("y ~ x | g", data) (g may be an interaction
    "g1:g2") or lmlist("y ~ x", data, by=["g1", "g2"]) like the tutorial's
    dlply(data, .(g1, g2), function(d) glm(y ~ x, data = d)). Cells come in
    factor-level order with the first variable varying slowest; empty cells
    are skipped; a cell whose fit fails is recorded in `.errors` (warned).

    executor: where the cells are fitted -- "serial" (default: in this process; a cell's
    fit takes milliseconds), None for a process pool over the machine's cores, any
    concurrent.futures.Executor or a Dask Client (see bayesmix.parallel)."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    formula_fixed, bar_groups = _split_bar(formula)
    if bar_groups is not None and by is not None:
        raise BayesmixError("give the groups either after '|' in the formula or in by=, not both")
    groups = bar_groups if bar_groups is not None else by
    if groups is None:
        raise BayesmixError("lmlist needs grouping variables: by=['g1', ...] or 'y ~ x | g'")
    groups = [groups] if isinstance(groups, str) else list(groups)
    for g in groups:
        if g not in data.columns:
            close = difflib.get_close_matches(str(g), [str(c) for c in data.columns], n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise DataError(f"unknown grouping column {g!r}{hint}")
    fam = get_family(family, link)
    complete = data[groups].notna().all(axis=1)
    work = data.loc[complete]
    levels = [_levels(work[g]) for g in groups]
    # the whole data first: unknown columns and formula errors fail here, once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = build_design(formula_fixed, work, family=fam, weights=weights)
    if whole.terms:
        raise FormulaError("lmlist fits have no random-effects terms; give the grouping "
                           "after a single '|' at the end of the formula or in by=")
    fits: dict = {}
    errors: dict = {}
    cells = []
    for cell in itertools.product(*levels):
        mask = np.ones(len(work), dtype=bool)
        for g, lev in zip(groups, cell):
            mask &= (work[g] == lev).to_numpy()
        if not mask.any():
            continue
        key = tuple(str(v) for v in cell) if len(groups) > 1 else str(cell[0])
        cells.append((key, work.loc[mask]))
    from .parallel import run_tasks
    results = run_tasks(_fit_cell, (formula_fixed, fam, weights, fitter), cells,
                        executor=executor, desc="lmList cells")
    for (key, _), (fit, error, caught) in zip(cells, results):
        label = ":".join(key) if isinstance(key, tuple) else key
        for message, category in caught:
            warnings.warn(f"cell {label}: {message}", category, stacklevel=user_stacklevel())
        if error is not None:
            errors[key] = error
            warnings.warn(f"cell {label}: fit failed: {error}", stacklevel=user_stacklevel())
        else:
            fits[key] = fit
    if not fits:
        raise BayesmixError("no cell could be fitted" + (
            f" (first error: {next(iter(errors.values()))})" if errors else ""))
    return LmList(formula_fixed, groups, fits, errors, fam.name if fam.link ==
                  get_family(fam.name).link else str(fam), data_name)


def _fit_cell(shared, cell):
    """One cell's lm/glm (runs in a worker): (fit or None, error text or None, warnings)."""
    formula_fixed, fam, weights, fitter = shared
    _, sub = cell
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            design = build_design(formula_fixed, sub, family=fam, weights=weights)
            fit = fit_glm(design, fitter=fitter)
        return fit, None, [(str(w.message), w.category) for w in caught]
    except (BayesmixError, np.linalg.LinAlgError) as exc:
        return None, str(exc), []
