"""Check results and the report that collects them.

Every check measures one number and grades it against a limit, giving a
:class:`CheckResult`. The results of one call make a :class:`QualityReport`, which a flow
can log, publish as an artifact, or turn into an exception with
:meth:`QualityReport.raise_if_failed`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ranking.checks.limits import Level, Limit, worst
from ranking.errors import RankingError


# Results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one target."""

    check: str  # e.g. "freshness_hours", "null_rate:item_ctr_7d"
    target: str  # "events", "features:item_stats", "training_set", "training_set:test"
    level: Level
    observed: float | None  # None when the check could not measure anything
    threshold: str  # the limits, in words: "warn > 24, fail > 72"
    message: str  # names the table / file and column

    @property
    def name(self) -> str:
        return f"{self.target}/{self.check}"

    def describe(self) -> str:
        observed = "n/a" if self.observed is None else f"{self.observed:.6g}"
        return f"{self.name}: {self.message} (observed {observed}; {self.threshold})"


class QualityError(RankingError):
    """Raised by :meth:`QualityReport.raise_if_failed`; carries the report."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        failed = report.failed
        lines = [f"{len(failed)} data-quality check(s) failed:"]
        lines += [f"  - {r.describe()}" for r in failed]
        super().__init__("\n".join(lines))


@dataclass
class QualityReport:
    """The results of one or more checks, in the order they ran."""

    results: list[CheckResult] = field(default_factory=list)

    def __add__(self, other: QualityReport) -> QualityReport:
        return QualityReport(self.results + other.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.level == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.level == "warn"]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    @property
    def level(self) -> Level:
        """The worst level of any result ("ok" for an empty report)."""
        return worst(*(r.level for r in self.results))  # type: ignore[return-value]

    def get(self, check: str, target: str | None = None) -> CheckResult:
        """The result of ``check`` (on ``target`` when given); KeyError if none."""
        for r in self.results:
            if r.check == check and (target is None or r.target == target):
                return r
        raise KeyError(f"no result for check {check!r}" + (f" on {target!r}" if target else ""))

    def to_frame(self) -> pd.DataFrame:
        columns = ["target", "check", "level", "observed", "threshold", "message"]
        return pd.DataFrame([asdict(r) for r in self.results], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: overall level, counts and every result."""
        return {
            "level": self.level,
            "checks": len(self.results),
            "failed": len(self.failed),
            "warnings": len(self.warnings),
            "results": [asdict(r) for r in self.results],
        }

    def summary(self) -> str:
        """One line: overall level, counts, and the names of failing (else warning) checks."""
        n_fail, n_warn = len(self.failed), len(self.warnings)
        line = (
            f"data quality {self.level.upper()}: {len(self.results)} checks, "
            f"{len(self.results) - n_fail - n_warn} ok, {n_warn} warn, {n_fail} fail"
        )
        worst = self.failed or self.warnings
        if worst:
            names = [r.name for r in worst[:5]]
            more = f" (+{len(worst) - 5} more)" if len(worst) > 5 else ""
            line += f"; {'failed' if self.failed else 'warned'}: {', '.join(names)}{more}"
        return line

    def raise_if_failed(self) -> None:
        """Raise :class:`QualityError` listing every failing check, if any failed."""
        if self.failed:
            raise QualityError(self)


def graded(check: str, target: str, observed: float, limit: Limit, message: str) -> CheckResult:
    return CheckResult(check, target, limit.grade(observed), observed, limit.describe(), message)


def failure(check: str, target: str, message: str, threshold: str = "must hold") -> CheckResult:
    return CheckResult(check, target, "fail", None, threshold, message)


def skipped(check: str, target: str, limit: Limit, message: str) -> CheckResult:
    return CheckResult(check, target, "ok", None, limit.describe(), f"skipped: {message}")


def pct(share: float) -> str:
    """A share as a percentage with 3 significant digits: 0.0000475 -> '0.00475%'."""
    return f"{share * 100:.3g}%"
