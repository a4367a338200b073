"""pandera helpers shared by the feature and training-set checks: run a schema lazily and
turn its failure cases into one readable phrase per problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd
import pandera.pandas as pa

from ranking.checks.report import CheckResult


def failure_cases(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Pandera's failure cases (empty when the frame is valid), every check run (lazy)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame(
        columns=["schema_context", "column", "check", "check_number", "failure_case", "index"]
    )


def is_value_check(cases: pd.DataFrame) -> pd.Series:
    """Rows of failure cases from a column's value checks (ranges), not schema structure."""
    return (cases["schema_context"] == "Column") & cases["check_number"].notna()


def schema_problems(cases: pd.DataFrame, unique: Sequence[str] | None = None) -> list[str]:
    """Structural failures (missing columns, types, nulls, duplicates), one phrase each."""
    problems = []
    dup = cases["check"] == "multiple_fields_uniqueness"
    if dup.any():
        keys = ", ".join(unique or dict.fromkeys(cases.loc[dup, "column"].astype(str)))
        problems.append(f"{cases.loc[dup, 'index'].nunique():,} rows share their ({keys})")
    for (column, check), part in cases[~dup].groupby(["column", "check"], dropna=False):
        if check == "column_in_dataframe":
            problems += [f"missing column {c}" for c in part["failure_case"]]
        elif check == "not_nullable":
            problems.append(f"{column} is NULL in {part['index'].nunique():,} rows")
        elif str(check).startswith("dtype"):
            problems.append(f"{column} has type {part['failure_case'].iloc[0]}, expected {check}")
        else:
            problems.append(f"{column}: {check} ({len(part):,} cases)")
    return problems


def schema_result(target: str, subject: str, problems: list[str], ok_text: str) -> CheckResult:
    """The ``schema`` check: fails with every structural problem named, else says ok."""
    return CheckResult(
        "schema",
        target,
        "fail" if problems else "ok",
        float(len(problems)),
        "no structural problem",
        f"{subject}: " + ("; ".join(problems) if problems else ok_text),
    )
