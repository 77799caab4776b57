"""Tables of ``egotune results`` as aligned text: numbers right-aligned under right-aligned
headers, words left-aligned under left-aligned headers, two spaces between columns, so that a
header of several words (``95 % CI``) reads as one column."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["cell_text", "text_table"]


def text_table(table: pd.DataFrame, *, params: Sequence[str] = ()) -> str:
    """``table`` without its index: ``params`` columns as the report prints hyperparameters
    (``3e-04``, ``1e-05``, ``[30, 70]``, as ``results top`` does), other numbers with two
    decimals (``75.00``), missing values as ``-``."""
    from tuner.results import format_number

    header = [str(name) for name in table.columns]
    columns = [
        [format_number(v) if name in params else cell_text(v) for v in table[name]]
        for name in table.columns
    ]
    lines = [header, *map(list, zip(*columns, strict=True))] if columns else [header]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = [all(_numeric(cell) for cell in column) for column in columns]
    return "\n".join(
        "  ".join(
            (cell.rjust(width) if flush_right else cell.ljust(width))
            for cell, width, flush_right in zip(line, widths, right, strict=True)
        ).rstrip()
        for line in lines
    )


def cell_text(value: Any) -> str:
    """A value that is not a hyperparameter: floats with two decimals, the rest as written."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    from tuner.results import format_number

    return format_number(value)


def _numeric(cell: str) -> bool:
    if cell == "-":
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True
