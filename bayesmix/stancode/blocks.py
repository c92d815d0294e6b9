"""The one place that knows Stan's block order and how a program is laid out.

Generators return `Blocks`: for each of Stan's seven program blocks a list of
code lines (unindented; `{` / `}` drive the indentation, `""` is a blank
line, `//` starts a comment). `assemble` concatenates the parts of every
block in Stan's order, drops empty blocks and indents the result, so every
generated program reads the same way whichever generator produced a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# Stan's program blocks, in the order a program must list them.
BLOCK_ORDER: tuple[tuple[str, str], ...] = (
    ("functions", "functions"),
    ("data", "data"),
    ("transformed_data", "transformed data"),
    ("parameters", "parameters"),
    ("transformed_parameters", "transformed parameters"),
    ("model", "model"),
    ("generated_quantities", "generated quantities"),
)

INDENT = "  "


@dataclass
class Blocks:
    """Lines of code per Stan program block (one generator's contribution)."""

    functions: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    transformed_data: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    transformed_parameters: list[str] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    generated_quantities: list[str] = field(default_factory=list)

    def __add__(self, other: "Blocks") -> "Blocks":
        return Blocks(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                         for f in fields(self)})

    def __iadd__(self, other: "Blocks") -> "Blocks":
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))
        return self

    def is_empty(self) -> bool:
        return not any(_has_code(getattr(self, f.name)) for f in fields(self))


def merge(parts) -> Blocks:
    """Concatenate generator outputs block by block, keeping their order."""
    out = Blocks()
    for part in parts:
        out += part
    return out


def _has_code(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _code_part(line: str) -> str:
    """The line without a trailing // comment or string literals (for brace counting)."""
    out, quote = [], False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"':
            quote = not quote
        elif not quote and line.startswith("//", i):
            break
        elif not quote:
            out.append(ch)
        i += 1
    return "".join(out)


def indent_lines(lines: list[str], depth: int = 1) -> list[str]:
    """Indent code by brace depth; a line starting with `}` closes before it prints."""
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            # no runs of blank lines, none straight after an opening brace
            if out and out[-1] != "" and not out[-1].rstrip().endswith("{"):
                out.append("")
            continue
        code = _code_part(line)
        opens, closes = code.count("{"), code.count("}")
        leading = len(code) - len(code.lstrip("}"))
        if leading and out and out[-1] == "":
            out.pop()  # no blank line before a closing brace
        out.append(INDENT * max(depth - leading, 0) + line)
        depth += opens - closes
    while out and out[-1] == "":
        out.pop()
    return out


def assemble(blocks: Blocks, header: list[str] = ()) -> str:
    """A complete Stan program: header comment, then the non-empty blocks in order."""
    out = [f"// {h}".rstrip() if h else "//" for h in header]
    for attr, name in BLOCK_ORDER:
        lines = getattr(blocks, attr)
        if not _has_code(lines):
            continue
        if out:
            out.append("")
        out.append(name + " {")
        out.extend(indent_lines(lines))
        out.append("}")
    return "\n".join(out) + "\n"
