"""Report text for ECG–text pretraining: structured English SCP statements, or the raw free-text report.

PTB-XL reports are mostly German; as the paper, a record's text is one
``"<Statement Category>: <SCP-ECG Statement Description>"`` per SCP code of nonzero likelihood
(why without the paper's ``[CLS]``/``[SCP]`` markers: docs/training/data.md).

>>> import pandas as pd
>>> table = pd.DataFrame({CATEGORY_COLUMN: ["Myocardial Infarction"],
...                       DESCRIPTION_COLUMN: ["inferior myocardial infarction"]}, index=["IMI"])
>>> statement_text("IMI", table)
'Myocardial Infarction: inferior myocardial infarction'
>>> structured_report({"IMI": 15.0, "NORM": 0.0}, table)
'Myocardial Infarction: inferior myocardial infarction'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

__all__ = [
    "CATEGORY_COLUMN",
    "DESCRIPTION_COLUMN",
    "read_scp_statements",
    "statement_text",
    "statement_texts",
    "record_statements",
    "structured_report",
    "clean_raw_report",
]

# Exact column names in PTB-XL's scp_statements.csv (v1.0.1 and v1.0.3 alike).
CATEGORY_COLUMN = "Statement Category"
DESCRIPTION_COLUMN = "SCP-ECG Statement Description"


def read_scp_statements(path: str | Path) -> pd.DataFrame:
    """Read ``scp_statements.csv``, indexed by SCP code (its first, unnamed column)."""
    table = pd.read_csv(path, index_col=0)
    table.index = table.index.astype(str)
    table.index.name = "scp_code"
    missing = {CATEGORY_COLUMN, DESCRIPTION_COLUMN} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: not a PTB-XL scp_statements.csv, columns {sorted(missing)} are missing")
    return table


def statement_text(code: str, statements: pd.DataFrame) -> str:
    """The structured statement of one SCP code: ``"<category>: <description>"``."""
    if code not in statements.index:
        raise KeyError(f"SCP code {code!r} is not in scp_statements.csv")
    row = statements.loc[code]
    category, description = row[CATEGORY_COLUMN], row[DESCRIPTION_COLUMN]
    # Both columns are filled for all 71 official codes; the fallbacks keep an edited table usable.
    if pd.isna(description):
        description = row.get("description", code)
    if pd.isna(category):
        return str(description).strip()
    return f"{str(category).strip()}: {str(description).strip()}"


def statement_texts(statements: pd.DataFrame) -> dict[str, str]:
    """Every code of the table mapped to its structured statement."""
    return {code: statement_text(code, statements) for code in statements.index}


def record_statements(
    codes: Mapping[str, float], statements: pd.DataFrame, *, include_zero: bool = False
) -> list[tuple[str, str, float]]:
    """``(code, statement, likelihood)`` for one record's codes, in the order PTB-XL lists them.

    Codes with likelihood 0 are dropped unless ``include_zero`` (the paper drops them).
    """
    return [
        (code, statement_text(code, statements), float(likelihood))
        for code, likelihood in codes.items()
        if include_zero or float(likelihood) > 0
    ]


def structured_report(codes: Mapping[str, float], statements: pd.DataFrame, sep: str = "; ") -> str:
    """One record's structured report as a single string: its statements with likelihood > 0.

    For reading and for encoders that take one text per record; the paper's embedding instead
    embeds each statement alone and averages them by likelihood (see ``text_encoder``).
    """
    return sep.join(text for _, text, _ in record_statements(codes, statements))


_WHITESPACE = re.compile(r"\s+")


def clean_raw_report(report: object) -> str:
    """The free-text ``report`` with runs of whitespace collapsed; untranslated, like the paper's.

    PTB-XL pads reports with runs of spaces where the original printout had columns; they carry
    no meaning but would change the tokenisation. A missing report becomes ``""``.
    """
    if report is None or (isinstance(report, float) and pd.isna(report)):
        return ""
    return _WHITESPACE.sub(" ", str(report)).strip()
