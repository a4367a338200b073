"""One severity vocabulary for every check (data quality and drift) and the limit types
that grade a measured number against a warn and a fail level.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

#: The grade of a data-quality check.
Level = Literal["ok", "warn", "fail"]
#: The grade of a drift check: a level, or too few rows to judge.
Status = Literal["ok", "warn", "fail", "not enough data"]
#: Order of severity, to combine grades: the worst one wins.
SEVERITY: dict[str, int] = {"ok": 0, "not enough data": 1, "warn": 2, "fail": 3}


def worst(*grades: str) -> str:
    """The most severe of ``grades`` ("ok" for none)."""
    return max(grades, key=SEVERITY.__getitem__, default="ok")


# Thresholds ------------------------------------------------------------------------------
class MaxLimit(BaseModel):
    """Upper limits: an observed value above ``warn`` warns, above ``fail`` fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warn: float
    fail: float

    @model_validator(mode="after")
    def _ordered(self) -> MaxLimit:
        if self.warn > self.fail:
            raise ValueError(f"warn ({self.warn}) must not be above fail ({self.fail})")
        return self

    def grade(self, value: float) -> Level:
        return "fail" if value > self.fail else "warn" if value > self.warn else "ok"

    def describe(self) -> str:
        return f"warn > {self.warn:g}, fail > {self.fail:g}"


class MinLimit(BaseModel):
    """Lower limits: an observed value below ``warn`` warns, below ``fail`` fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warn: float
    fail: float

    @model_validator(mode="after")
    def _ordered(self) -> MinLimit:
        if self.warn < self.fail:
            raise ValueError(f"warn ({self.warn}) must not be below fail ({self.fail})")
        return self

    def grade(self, value: float) -> Level:
        return "fail" if value < self.fail else "warn" if value < self.warn else "ok"

    def describe(self) -> str:
        return f"warn < {self.warn:g}, fail < {self.fail:g}"


class Band(BaseModel):
    """A healthy band: outside [warn_low, warn_high] warns, outside [fail_low, fail_high] fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fail_low: float
    warn_low: float
    warn_high: float
    fail_high: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if not self.fail_low <= self.warn_low <= self.warn_high <= self.fail_high:
            raise ValueError("need fail_low <= warn_low <= warn_high <= fail_high")
        return self

    def grade(self, value: float) -> Level:
        if value < self.fail_low or value > self.fail_high:
            return "fail"
        if value < self.warn_low or value > self.warn_high:
            return "warn"
        return "ok"

    def describe(self) -> str:
        return (
            f"warn outside [{self.warn_low:g}, {self.warn_high:g}], "
            f"fail outside [{self.fail_low:g}, {self.fail_high:g}]"
        )


Limit = MaxLimit | MinLimit | Band
