"""The one Markdown table builder for model cards, evaluation reports, LOSO and ablation tables.

One place decides how a cell looks (floats at a fixed precision, missing values blank, pipes
escaped), so the tables in a card, in ``metrics.md`` and in ``loso.md`` cannot drift apart.
Only training and evaluation build tables; the ``detector`` library never imports this.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence


def cell(value: Any, digits: int = 4) -> str:
    """None -> blank, a real number that is not an integer -> ``digits`` decimals, else ``str``."""
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:.{digits}f}"
    return str(value).replace("|", r"\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline). Pre-format a cell as a string to
    give it another precision; rows shorter than the header are padded with blanks."""
    width = len(header)
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|---" * width + "|"]
    for row in rows:
        row = list(row)
        if len(row) > width:
            raise ValueError(f"row has {len(row)} cells, the header {width}: {row}")
        cells = [cell(v, digits) for v in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
