"""Notebook views (issue #19): every result object a notebook shows has `_repr_html_`; R-style
printouts arrive in a monospace <pre> block with their text unchanged (escaped), tables as
HTML tables with the same numbers as the text view."""

import html
import re
import warnings

import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _rows(markup: str) -> list[list[str]]:
    """The cells of the first HTML table, row by row (html.parser: no lxml needed)."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    p = Cells()
    p.feed(markup[markup.index("<table"):markup.index("</table>")])
    return p.rows


def _pre_text(markup: str) -> str:
    m = re.search(r"<pre[^>]*>(.*?)</pre>", markup, re.S)
    assert m, markup[:200]
    return html.unescape(m.group(1))


@pytest.fixture(scope="module")
def sleep():
    return load("sleepstudy")


def test_ml_fits_show_their_summary(sleep):
    reml = bayesmix.Model(SLEEP, sleep).fit()
    assert _pre_text(reml._repr_html_()) == str(reml.summary())
    assert "Linear mixed model fit by REML" in _pre_text(reml._repr_html_())
    cbpp = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                          load("cbpp"), family="binomial").fit()
    assert _pre_text(cbpp._repr_html_()) == str(cbpp.summary())
    ols = bayesmix.lm("Reaction ~ Days", sleep)
    assert _pre_text(ols._repr_html_()) == str(ols.summary())
    assert _pre_text(ols.display()._repr_html_()) == str(ols.display())


def test_model_and_design(sleep):
    m = bayesmix.Model(SLEEP, sleep)
    assert _pre_text(m._repr_html_()) == repr(m)
    assert _pre_text(m.design._repr_html_()) == str(m.design)
    # characters HTML would swallow are escaped, not dropped
    m2 = bayesmix.Model("Reaction ~ I(Days < 5) + (1 | Subject)", sleep)
    assert "&lt;" in m2._repr_html_() and "I(Days < 5)" in _pre_text(m2._repr_html_())


def test_tables_are_html_tables(sleep):
    small = bayesmix.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    large = bayesmix.lmer(SLEEP, sleep, REML=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bayesmix.bootstrap(small, nsim=20, seed=1)
        pb = bayesmix.pb_modcomp(small, large, nsim=20, seed=1)
    for obj, table in ((boot, boot.summary()), (pb, pb.table())):
        markup = obj._repr_html_()
        assert _pre_text(markup) == repr(obj).splitlines()[0]
        rows = _rows(markup)
        assert rows[0][1:] == list(map(str, table.columns))
        body = [r for r in rows[1:] if r and r[0]]
        assert [r[0] for r in body] == list(map(str, table.index))
        for r, (_, want) in zip(body, table.iterrows()):
            got = [float(x) if x not in ("NaN", "") else float("nan") for x in r[1:]]
            pd.testing.assert_series_equal(pd.Series(got), pd.Series(want.to_numpy(float)),
                                           rtol=1e-5, check_names=False)
    anova = bayesmix.anova(small, large)
    assert _pre_text(anova._repr_html_()) == str(anova)  # R's printout, as text
