"""Ranking metrics over plain frames, the same code for the model and every baseline.

Input: one row per (query group, candidate) with a graded ``label`` and a ``score``.
Ties in score are broken by a seeded random key, never by row order (which would
favour whatever the candidate generator listed first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ranking.schema import REPORT_METRICS


def _ranked(df: pd.DataFrame, score: str, label: str, group: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ranked = pd.DataFrame(
        {
            "g": df[group].to_numpy(),
            "s": df[score].to_numpy(dtype=float),
            "y": df[label].to_numpy(dtype=float),
            "tie": rng.random(len(df)),
        }
    )
    ranked["s"] = np.nan_to_num(ranked["s"], nan=-np.inf)
    ranked = ranked.sort_values(["g", "s", "tie"], ascending=[True, False, True], kind="stable")
    ranked["rank"] = ranked.groupby("g").cumcount() + 1
    return ranked


def ranking_metrics(
    df: pd.DataFrame,
    score: str,
    label: str = "label",
    group: str = "group_id",
    ks: tuple[int, ...] = (10,),
    seed: int = 0,
) -> dict[str, float]:
    """Mean NDCG@k, MAP@k and recall@k over groups, and MRR.

    NDCG uses gain ``2^label - 1`` and ``log2(rank + 1)`` discount; MAP, recall and MRR
    count ``label > 0`` as relevant. Groups with nothing relevant are skipped.
    """
    ranked = _ranked(df, score, label, group, seed)
    ranked["rel"] = (ranked["y"] > 0).astype(float)
    totals = ranked.groupby("g")["rel"].sum()
    keep = totals[totals > 0].index
    ranked = ranked[ranked["g"].isin(keep)]
    totals = totals.loc[keep]
    discount = 1.0 / np.log2(ranked["rank"].to_numpy() + 1.0)
    ranked["dcg"] = (np.power(2.0, ranked["y"]) - 1.0) * discount
    ideal = ranked.sort_values(["g", "y"], ascending=[True, False])
    ideal_rank = ideal.groupby("g").cumcount().to_numpy() + 1
    ideal = ideal.assign(rank=ideal_rank, idcg=(np.power(2.0, ideal["y"]) - 1.0)
                         / np.log2(ideal_rank + 1.0))  # fmt: skip
    ranked["hits"] = ranked.groupby("g")["rel"].cumsum()
    out: dict[str, float] = {"groups": float(len(keep))}
    for k in ks:
        top = ranked["rank"] <= k
        dcg = ranked[top].groupby("g")["dcg"].sum()
        idcg = ideal[ideal["rank"] <= k].groupby("g")["idcg"].sum()
        out[f"ndcg@{k}"] = float((dcg.reindex(keep, fill_value=0) / idcg.loc[keep]).mean())
        precision_at_hit = (ranked["hits"] / ranked["rank"]) * ranked["rel"]
        ap = precision_at_hit[top].groupby(ranked.loc[top, "g"]).sum()
        out[f"map@{k}"] = float((ap.reindex(keep, fill_value=0) / np.minimum(totals, k)).mean())
        hits = ranked[top].groupby("g")["rel"].sum().reindex(keep, fill_value=0)
        out[f"recall@{k}"] = float((hits / totals).mean())
    first_hit = ranked[ranked["rel"] > 0].groupby("g")["rank"].min()
    out["mrr"] = float((1.0 / first_hit).mean())
    return out


def ndcg_per_query(
    df: pd.DataFrame, score: str, label: str = "label", group: str = "group_id", k: int = 10,
    seed: int = 0,
) -> pd.Series:  # fmt: skip
    """NDCG@k of each query group with something relevant (indexed by group), the same
    gains, discount and tie-breaking as :func:`ranking_metrics`: its mean is that NDCG@k."""
    ranked = _ranked(df, score, label, group, seed)
    gain = np.power(2.0, ranked["y"].to_numpy()) - 1.0
    ranked["dcg"] = gain / np.log2(ranked["rank"].to_numpy() + 1.0)
    ideal = ranked.sort_values(["g", "y"], ascending=[True, False])
    ideal_rank = ideal.groupby("g").cumcount().to_numpy() + 1
    ideal = ideal.assign(rank=ideal_rank, idcg=(np.power(2.0, ideal["y"]) - 1.0)
                         / np.log2(ideal_rank + 1.0))  # fmt: skip
    idcg = ideal[ideal["rank"] <= k].groupby("g")["idcg"].sum()
    relevant = ranked.groupby("g")["y"].max()
    keep = relevant[relevant > 0].index  # as ranking_metrics: groups with a relevant item
    dcg = ranked[ranked["rank"] <= k].groupby("g")["dcg"].sum().reindex(keep, fill_value=0.0)
    return (dcg / idcg.loc[keep]).rename_axis(group).rename(f"ndcg@{k}")


@dataclass(frozen=True)
class Paired:
    """Two scorers on the same queries: means, the mean per-query difference ``a - b`` with
    its standard error, and how many queries each wins."""

    a: str
    b: str
    queries: int
    mean_a: float
    mean_b: float
    diff: float
    se: float
    wins: int
    losses: int
    ties: int

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.a} - {self.b}: {self.diff:+.4f} ± {self.se:.4f} (SE) per query over "
                f"{self.queries} queries ({self.mean_a:.4f} vs {self.mean_b:.4f}); better on "
                f"{self.wins}, worse on {self.losses}, tied on {self.ties}")  # fmt: skip


def paired(a: pd.Series, b: pd.Series, name_a: str = "a", name_b: str = "b") -> Paired:
    """Paired comparison of two per-query metric series on the queries both have: the
    figure that says whether a difference stands out of the noise of which users were
    tested (a difference of two means over the same queries, not two independent means)."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    diff = (both["a"] - both["b"]).to_numpy(dtype=float)
    n = len(diff)
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    tol = 1e-12
    return Paired(a=name_a, b=name_b, queries=n, mean_a=float(both["a"].mean()),
                  mean_b=float(both["b"].mean()), diff=float(diff.mean()) if n else float("nan"),
                  se=se, wins=int((diff > tol).sum()), losses=int((diff < -tol).sum()),
                  ties=int((np.abs(diff) <= tol).sum()))  # fmt: skip


def most_popular_scores(df: pd.DataFrame) -> pd.Series:
    """The most-popular baseline: recent popularity, then all-time popularity."""
    recent = df["item_popularity_7d"].fillna(0).astype(float)
    lifetime = df["item_popularity_all"].fillna(0).astype(float)
    return recent + lifetime / (lifetime.max() + 1.0)


def compare(
    test: pd.DataFrame, scores: dict[str, pd.Series], ks: tuple[int, ...] = (10,), seed: int = 0
) -> pd.DataFrame:
    """One row per scorer (model or baseline), one column per metric, same candidates."""
    rows = {}
    for name, values in scores.items():
        frame = test[["group_id", "label"]].assign(score=values.reindex(test.index).to_numpy())
        rows[name] = ranking_metrics(frame, "score", ks=ks, seed=seed)
    return pd.DataFrame.from_dict(rows, orient="index")


def catalogue_coverage(
    test: pd.DataFrame, score: pd.Series, k: int = 10, catalogue_size: int | None = None
) -> float:
    """Share of the catalogue that appears in at least one query's top ``k``.

    ``catalogue_size`` defaults to the distinct items among the candidates.
    """
    frame = test[["group_id", "item_id"]].assign(s=score.reindex(test.index).fillna(-np.inf))
    top = frame.sort_values(["group_id", "s"], ascending=[True, False]).groupby("group_id").head(k)
    size = catalogue_size or test["item_id"].nunique()
    return float(top["item_id"].nunique() / size) if size else 0.0


def novelty(test: pd.DataFrame, score: pd.Series, popularity: pd.Series, k: int = 10) -> float:
    """Mean self-information ``-log2 p(item)`` of the items in each query's top ``k``, with
    ``p`` an item's share of past positive interactions (add-one smoothed over the items of
    ``test``): higher means the lists reach further from the head of the catalogue."""
    pop = popularity.reindex(test.index).fillna(0).clip(lower=0).to_numpy(dtype=float)
    frame = test[["group_id", "item_id"]].assign(s=score.reindex(test.index).fillna(-np.inf),
                                                 pop=pop)  # fmt: skip
    per_item = frame.drop_duplicates("item_id")["pop"]
    total = per_item.sum() + len(per_item)
    top = frame.sort_values(["group_id", "s"], ascending=[True, False]).groupby("group_id").head(k)
    top = top[np.isfinite(top["s"])]
    return float((-np.log2((top["pop"] + 1.0) / total)).mean()) if len(top) else float("nan")


#: The past-popularity feature novelty is measured with.
NOVELTY_POPULARITY = "item_popularity_all"


def report(
    test: pd.DataFrame,
    scores: dict[str, pd.Series],
    seed: int = 0,
    catalogue_size: int | None = None,
) -> pd.DataFrame:
    """The standard table: one row per scorer, :data:`REPORT_METRICS` plus ``groups``
    (novelty is NaN where ``test`` lacks :data:`NOVELTY_POPULARITY`)."""
    table = compare(test, scores, ks=(5, 10, 20, 50), seed=seed)
    table["coverage@10"] = [
        catalogue_coverage(test, scores[name], 10, catalogue_size) for name in table.index
    ]
    popularity = test.get(NOVELTY_POPULARITY)
    table["novelty@10"] = [
        np.nan if popularity is None else novelty(test, scores[name], popularity)
        for name in table.index
    ]
    return table[["groups", *REPORT_METRICS]]


def user_segment(history_events: pd.Series, light_min: int, heavy_min: int) -> pd.Series:
    """'new' (< light_min events before the cut-off), 'light' or 'heavy' (>= heavy_min)."""
    n = history_events.fillna(0).to_numpy()
    labels = np.where(n >= heavy_min, "heavy", np.where(n >= light_min, "light", "new"))
    return pd.Series(labels, index=history_events.index)


def report_by_segment(
    test: pd.DataFrame, scores: dict[str, pd.Series], segments: pd.Series, seed: int = 0
) -> pd.DataFrame:
    """:func:`report` per user segment, stacked, with a ``segment`` column first."""
    parts = []
    for segment in ("new", "light", "heavy"):
        mask = segments.reindex(test.index) == segment
        if not mask.any():
            continue
        part = report(test[mask], {n: s[mask[mask].index] for n, s in scores.items()}, seed=seed)
        parts.append(part.assign(segment=segment))
    if not parts:
        return pd.DataFrame(columns=["segment", "groups", *REPORT_METRICS])
    table = pd.concat(parts)
    return table[["segment", "groups", *REPORT_METRICS]]
