"""Drift detection: compare a current sample of features (or scores) with a reference one.

Each column gets one verdict, :class:`FeatureDrift`, with a status in ``ok``, ``warn``,
``fail`` or ``not enough data``, the statistics behind it and a one-line reason. A
:class:`DriftReport` collects them; it is *breached* when any column fails.

How a column is judged:

* **Null share** (every kind): the share of missing values in each sample. It fails when it
  moved by more than ``null_rate_fail`` (warns over ``null_rate_warn``) *and* a
  two-proportion chi-square test says the move is significant (``p < null_pvalue``). A
  feature that goes all-null is therefore a ``fail``. For numeric columns, non-numbers
  and +/-inf count as missing.
* **Numeric and score columns**: the Population Stability Index (:func:`psi`) over
  reference-quantile bins of the *non-null* values, and the two-sample Kolmogorov-Smirnov
  test. PSI sets the level (``psi_warn`` / ``psi_fail``); the KS p-value must also be below
  ``ks_pvalue``. Requiring both avoids the two classic false alarms: KS flags negligible
  differences on huge samples, PSI is noisy on small ones.
* **Categorical columns**: the Jensen-Shannon distance (base 2, in [0, 1]) between the
  category shares of the non-null values sets the level (``js_warn`` / ``js_fail``); the
  chi-square test on the 2 x K contingency table must also give ``p < chi2_pvalue``.
  Categories too rare for the chi-square approximation are pooled for the test only.
* **Small samples**: with fewer than ``min_samples`` rows in either sample the status is
  ``not enough data`` and never an alarm. When there are enough rows but too few non-null
  values, a null-share alarm is still reported; otherwise the status is
  ``not enough data``.

Nothing here reads the clock or uses randomness, so a report is a pure function of its
inputs. ``ranking.monitoring.html_report`` renders a report as one self-contained page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from ranking.checks.limits import SEVERITY, Status, worst
from ranking.checks.thresholds import DriftThresholds

Kind = Literal["numeric", "categorical", "score"]

#: Share given to a bin that one sample leaves empty, so PSI stays finite.
EPS = 1e-4


@dataclass
class FeatureDrift:
    """The verdict on one column. Statistics that do not apply (or could not be computed)
    are ``None``; ``n_ref`` and ``n_cur`` count rows, nulls included."""

    name: str
    kind: Kind
    n_ref: int
    n_cur: int
    psi: float | None = None
    ks_stat: float | None = None
    ks_pvalue: float | None = None
    js: float | None = None
    chi2_pvalue: float | None = None
    null_rate_ref: float | None = None
    null_rate_cur: float | None = None
    null_pvalue: float | None = None
    status: Status = "ok"
    reason: str = ""


@dataclass
class DriftReport:
    """Verdicts on every checked column and the thresholds they were judged by."""

    features: list[FeatureDrift]
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def breached(self) -> bool:
        """True when any column failed."""
        return any(f.status == "fail" for f in self.features)

    @property
    def drifted(self) -> list[FeatureDrift]:
        """Columns whose status is ``warn`` or ``fail``."""
        return [f for f in self.features if f.status in ("warn", "fail")]

    def counts(self) -> dict[str, int]:
        """Number of columns per status (every status present, zero or not)."""
        out = dict.fromkeys(SEVERITY, 0)
        for f in self.features:
            out[f.status] += 1
        return out

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable summary (no NaN: missing statistics are ``None``)."""
        return {
            "breached": self.breached,
            "counts": self.counts(),
            "thresholds": self.thresholds.model_dump(),
            "features": [asdict(f) for f in self.features],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per column, the :class:`FeatureDrift` fields as columns."""
        columns = list(FeatureDrift.__dataclass_fields__)
        return pd.DataFrame([asdict(f) for f in self.features], columns=columns)


# Statistics --------------------------------------------------------------------------


def finite_values(values: Iterable[float] | np.ndarray | pd.Series) -> np.ndarray:
    """The finite values of ``values`` as float64 (NaN, None and +/-inf dropped)."""
    arr = _as_float(values)
    return arr[np.isfinite(arr)]


def _as_float(values: Iterable[float] | np.ndarray | pd.Series) -> np.ndarray:
    """``values`` as a float64 array; what is not a number becomes NaN."""
    if isinstance(values, pd.Series):
        series = values
    else:
        array = values if isinstance(values, np.ndarray) else np.asarray(list(values))
        series = pd.Series(array.ravel())
    numbers = pd.to_numeric(series, errors="coerce")
    arr = numbers.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr.copy()
    arr[~np.isfinite(arr)] = np.nan
    return arr


def quantile_cuts(reference: np.ndarray, bins: int) -> np.ndarray:
    """Cut points of ``bins`` reference-quantile bins (finite reference values only).

    The cut points are the interior quantiles ``1/bins, ..., (bins-1)/bins`` (NumPy's
    linear interpolation), with duplicates removed, so a value shared by many rows (ties)
    makes fewer, wider bins rather than empty ones. Bins are right-closed:
    ``(-inf, c1], (c1, c2], ..., (c_last, +inf)``, so a heavily tied value sits in its own
    bin. A constant reference ``c`` gets three bins: below ``c``, exactly ``c``, above.
    """
    ref = finite_values(reference)
    if ref.size == 0:
        raise ValueError("reference has no finite values")
    cuts = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    if cuts.size <= 1:
        c = float(ref[0]) if cuts.size == 0 else float(cuts[0])
        cuts = np.array([np.nextafter(c, -np.inf), c])
    return cuts


def bin_shares(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Share of ``values`` (finite ones) in each right-closed bin of ``cuts``."""
    vals = finite_values(values)
    counts = np.bincount(np.searchsorted(cuts, vals, side="left"), minlength=cuts.size + 1)
    return counts / max(vals.size, 1)


def psi(
    reference: Iterable[float] | np.ndarray | pd.Series,
    current: Iterable[float] | np.ndarray | pd.Series,
    bins: int = 10,
    eps: float = EPS,
) -> float:
    """Population Stability Index of ``current`` against ``reference``.

    ``PSI = sum_i (c_i - r_i) * ln(c_i / r_i)`` over the reference-quantile bins of
    :func:`quantile_cuts`, where ``r_i`` and ``c_i`` are the shares of each sample in bin
    ``i``, each floored at ``eps`` so an empty bin gives a large but finite term.

    Missing values (NaN, None, +/-inf) are **excluded** from both samples: PSI describes
    the distribution of the values present; the null share is checked on its own by
    :func:`detect_drift`. Returns NaN when either sample has no finite value. Zero for
    identical samples; 0.1 is commonly read as a moderate shift, 0.25 as a large one.
    """
    ref, cur = finite_values(reference), finite_values(current)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    cuts = quantile_cuts(ref, bins)
    r = np.maximum(bin_shares(ref, cuts), eps)
    c = np.maximum(bin_shares(cur, cuts), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _ks(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value (asymptotic for large samples: exact is quadratic)."""
    method = "exact" if max(ref.size, cur.size) <= 2_000 else "asymp"
    res = ks_2samp(ref, cur, method=method)
    return float(res.statistic), float(res.pvalue)


def _two_proportion_pvalue(hits_ref: int, n_ref: int, hits_cur: int, n_cur: int) -> float:
    """P-value that two shares (e.g. of nulls) differ, chi-square on the 2 x 2 table."""
    hits, total = hits_ref + hits_cur, n_ref + n_cur
    if n_ref == 0 or n_cur == 0 or hits == 0 or hits == total:
        return 1.0  # one sample empty, or no variation at all: nothing to test
    table = np.array([[hits_ref, n_ref - hits_ref], [hits_cur, n_cur - hits_cur]])
    return float(chi2_contingency(table, correction=True).pvalue)


def category_shares(
    reference: pd.Series, current: pd.Series
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Union of categories (as strings, nulls dropped) and each sample's counts of them,
    categories ordered by their combined count (most frequent first, then by name)."""
    ref = reference[reference.notna()].astype(str).value_counts()
    cur = current[current.notna()].astype(str).value_counts()
    both = ref.add(cur, fill_value=0)
    order = sorted(both.index, key=lambda k: (-both[k], k))
    return (
        order,
        ref.reindex(order, fill_value=0).to_numpy(dtype="float64"),
        cur.reindex(order, fill_value=0).to_numpy(dtype="float64"),
    )


def _chi2_pvalue(ref_counts: np.ndarray, cur_counts: np.ndarray, min_expected: float) -> float:
    """Chi-square p-value of the 2 x K table; categories whose expected count is below
    ``min_expected`` in either row are pooled into one column first."""
    n_ref, n_cur = ref_counts.sum(), cur_counts.sum()
    total = ref_counts + cur_counts
    expected_min = total * min(n_ref, n_cur) / (n_ref + n_cur)
    rare = expected_min < min_expected
    ref_cols, cur_cols = list(ref_counts[~rare]), list(cur_counts[~rare])
    if rare.any():
        ref_cols.append(ref_counts[rare].sum())
        cur_cols.append(cur_counts[rare].sum())
    table = np.array([ref_cols, cur_cols])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0  # one category in all: the shares cannot differ
    return float(chi2_contingency(table, correction=True).pvalue)


# Per-column checks -------------------------------------------------------------------


def _level(value: float, warn: float, fail: float) -> Status:
    return "fail" if value >= fail else "warn" if value >= warn else "ok"


def _null_verdict(
    res: FeatureDrift, nulls_ref: int, nulls_cur: int, t: DriftThresholds
) -> tuple[Status, str]:
    """Fill the null-share fields of ``res``; return the null check's status and reason."""
    res.null_rate_ref = nulls_ref / res.n_ref if res.n_ref else None
    res.null_rate_cur = nulls_cur / res.n_cur if res.n_cur else None
    if res.null_rate_ref is None or res.null_rate_cur is None:
        return "ok", ""
    res.null_pvalue = _two_proportion_pvalue(nulls_ref, res.n_ref, nulls_cur, res.n_cur)
    delta = abs(res.null_rate_cur - res.null_rate_ref)
    level: Status = (
        "fail" if delta > t.null_rate_fail else "warn" if delta > t.null_rate_warn else "ok"
    )
    if level == "ok":
        return "ok", ""
    text = f"null share {res.null_rate_ref:.1%} -> {res.null_rate_cur:.1%}"
    if res.null_pvalue >= t.null_pvalue:
        return "ok", f"{text} (not significant, p={res.null_pvalue:.2g})"
    return level, text


def _distribution_verdict(
    effect: float, effect_name: str, warn: float, fail: float, pvalue: float, alpha: float
) -> tuple[Status, str]:
    """An alarm needs the effect over a threshold and a significant test."""
    level = _level(effect, warn, fail)
    text = f"{effect_name} {effect:.3f}"
    if level == "ok":
        return "ok", ""
    if pvalue >= alpha:
        return "ok", f"{text} over {warn:g} but not significant (p={pvalue:.2g})"
    return level, f"{text} >= {fail if level == 'fail' else warn:g} (p={pvalue:.2g})"


def _finish(res: FeatureDrift, parts: list[tuple[Status, str]]) -> FeatureDrift:
    res.status = worst(*(s for s, _ in parts))  # type: ignore[assignment]
    res.reason = "; ".join(text for _, text in parts if text) or "no significant change"
    return res


def _few_values(
    res: FeatureDrift, null_part: tuple[Status, str], n_ref_values: int, n_cur_values: int
) -> FeatureDrift:
    """Enough rows but too few non-null values to compare distributions: a null-share
    alarm still stands, anything else is 'not enough data'."""
    counts = f"{n_ref_values} reference / {n_cur_values} current non-null values"
    if null_part[0] in ("warn", "fail"):
        return _finish(res, [null_part, ("ok", counts)])
    res.status = "not enough data"
    res.reason = "; ".join(p for p in (null_part[1], counts) if p)
    return res


def _too_small(res: FeatureDrift, t: DriftThresholds) -> bool:
    if min(res.n_ref, res.n_cur) >= t.min_samples:
        return False
    res.status = "not enough data"
    res.reason = f"{res.n_ref} reference / {res.n_cur} current rows (< {t.min_samples})"
    return True


def check_numeric(
    name: str,
    reference: pd.Series,
    current: pd.Series,
    thresholds: DriftThresholds | None = None,
    kind: Kind = "numeric",
) -> FeatureDrift:
    """Null share, PSI and KS of one numeric column (or model score, ``kind="score"``)."""
    t = thresholds or DriftThresholds()
    ref_all, cur_all = _as_float(reference), _as_float(current)
    ref, cur = ref_all[~np.isnan(ref_all)], cur_all[~np.isnan(cur_all)]
    res = FeatureDrift(name=name, kind=kind, n_ref=int(ref_all.size), n_cur=int(cur_all.size))
    null_part = _null_verdict(res, res.n_ref - ref.size, res.n_cur - cur.size, t)
    if ref.size and cur.size:
        res.psi = psi(ref, cur, t.bins)
        res.ks_stat, res.ks_pvalue = _ks(ref, cur)
    if _too_small(res, t):
        return res
    if res.psi is None or res.ks_pvalue is None or min(ref.size, cur.size) < t.min_samples:
        return _few_values(res, null_part, ref.size, cur.size)
    dist = _distribution_verdict(res.psi, "PSI", t.psi_warn, t.psi_fail, res.ks_pvalue, t.ks_pvalue)
    return _finish(res, [null_part, dist])


def check_categorical(
    name: str,
    reference: pd.Series,
    current: pd.Series,
    thresholds: DriftThresholds | None = None,
) -> FeatureDrift:
    """Null share, Jensen-Shannon distance and chi-square test of one categorical column.

    Values are compared as strings, so ``1`` and ``"1"`` are the same category.
    """
    t = thresholds or DriftThresholds()
    res = FeatureDrift(name=name, kind="categorical", n_ref=len(reference), n_cur=len(current))
    nulls_ref, nulls_cur = int(reference.isna().sum()), int(current.isna().sum())
    null_part = _null_verdict(res, nulls_ref, nulls_cur, t)
    cats, ref_counts, cur_counts = category_shares(reference, current)
    n_ref_values, n_cur_values = int(ref_counts.sum()), int(cur_counts.sum())
    if n_ref_values and n_cur_values:
        res.js = float(jensenshannon(ref_counts, cur_counts, base=2))
        res.chi2_pvalue = _chi2_pvalue(ref_counts, cur_counts, min_expected=5.0)
    if _too_small(res, t):
        return res
    if res.js is None or res.chi2_pvalue is None or min(n_ref_values, n_cur_values) < t.min_samples:
        return _few_values(res, null_part, n_ref_values, n_cur_values)
    status, text = _distribution_verdict(
        res.js, "JS distance", t.js_warn, t.js_fail, res.chi2_pvalue, t.chi2_pvalue
    )
    if status != "ok":
        new = [c for c, r, k in zip(cats, ref_counts, cur_counts, strict=True) if r == 0 < k]
        gone = [c for c, r, k in zip(cats, ref_counts, cur_counts, strict=True) if k == 0 < r]
        if new:
            text += "; new categories: " + ", ".join(new[:3]) + (" ..." if new[3:] else "")
        if gone:
            text += "; vanished: " + ", ".join(gone[:3]) + (" ..." if gone[3:] else "")
    return _finish(res, [null_part, (status, text)])


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: DriftThresholds | None = None,
    score_column: str | None = None,
) -> DriftReport:
    """Check every named column of ``current`` against ``reference``.

    ``numeric`` columns get PSI + KS, ``categorical`` ones JS distance + chi-square, the
    optional ``score_column`` (a model's output) the numeric checks under kind ``score``;
    all get the null-share check. A column absent from one frame is judged as if it were
    all null there (so a dropped feature fails); absent from both, or named twice, is a
    caller error (``ValueError``).
    """
    t = thresholds or DriftThresholds()
    plan: list[tuple[str, Kind]] = [(c, "numeric") for c in numeric]
    plan += [(c, "categorical") for c in categorical]
    if score_column is not None:
        plan.append((score_column, "score"))
    names = [c for c, _ in plan]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"columns named more than once: {', '.join(repeated)}")
    unknown = [c for c in names if c not in reference.columns and c not in current.columns]
    if unknown:
        raise ValueError(f"columns in neither frame: {', '.join(unknown)}")

    features = []
    for column, kind in plan:
        ref = column_of(reference, column)
        cur = column_of(current, column)
        if kind == "categorical":
            verdict = check_categorical(column, ref, cur, t)
        else:
            verdict = check_numeric(column, ref, cur, t, kind=kind)
        for frame, label in ((reference, "reference"), (current, "current")):
            if column not in frame.columns:
                verdict.reason = f"column missing from {label}; {verdict.reason}"
        features.append(verdict)
    return DriftReport(features=features, thresholds=t)


def column_of(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]``, or an all-null column of the frame's length when it is absent."""
    if column in frame.columns:
        return frame[column].reset_index(drop=True)
    return pd.Series([None] * len(frame), dtype="object")
