"""Shared text formatting for printed summaries (R-like number layout)."""

from __future__ import annotations

import html
import math


def signif_str(x: float, digits: int = 4) -> str:
    """R's print(signif(x, digits)) for a single number."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}"


def fmt_num(x: float, decimals: int = 2) -> str:
    return f"{x:.{decimals}f}"


def html_pre(text: str) -> str:
    return f"<pre style='font-size: 0.85em'>{html.escape(text)}</pre>"


def html_with_table(head: str, table, float_format=None) -> str:
    """A notebook's view of a result: its header text in a monospace block, then its
    table as an HTML table (pandas escapes the cells)."""
    return html_pre(head) + table.to_html(float_format=float_format, border=0)


class Display:
    """The compact arm::display() text, printable and shown as HTML in notebooks."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_pre(self.text)


def display_text(call: str, coef_rows, error_rows=(), corr_rows=(), footer=()) -> str:
    """arm::display layout: coef.est / coef.se, then error terms and fit statistics."""
    name_w = max([len(r[0]) for r in coef_rows] + [10])
    lines = [call, f"{'':<{name_w}} coef.est coef.se"]
    for name, est, se in coef_rows:
        lines.append(f"{name:<{name_w}} {est:8.2f} {se:7.2f}")
    if error_rows:
        lines.append("")
        lines.append("Error terms:")
        gw = max(len(r[0]) for r in error_rows) + 1
        nw = max(len(r[1]) for r in error_rows) + 1
        lines.append(f" {'Groups':<{gw}} {'Name':<{nw}} Std.Dev.")
        for grp, name, sd in error_rows:
            lines.append(f" {grp:<{gw}} {name:<{nw}} {sd:8.2f}")
        for grp, pair, cor in corr_rows:
            lines.append(f" {grp:<{gw}} Corr({pair}) {cor:5.2f}")
        lines.append("---")
    lines.extend(footer)
    return "\n".join(lines)
