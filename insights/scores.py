"""Satisfaction scores by their standard definitions: NPS and CSAT (pure functions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class NpsResult:
    """Net Promoter Score with its three shares (percentages; None without answers)."""

    responses: int
    promoters: float | None
    passives: float | None
    detractors: float | None
    score: float | None


@dataclass(frozen=True)
class CsatResult:
    """Customer satisfaction: the share of 4 and 5 answers on a 1–5 scale."""

    responses: int
    satisfied: int
    score: float | None


def _share(part: int, whole: int) -> float:
    return round(100 * part / whole, 1)


def nps(answers: Iterable[int]) -> NpsResult:
    """NPS = % promoters (9–10) − % detractors (0–6); passives are 7–8."""
    values = [int(a) for a in answers]
    if any(not 0 <= v <= 10 for v in values):
        raise ValueError("NPS answers run from 0 to 10")
    total = len(values)
    if not total:
        return NpsResult(0, None, None, None, None)
    promoters = sum(v >= 9 for v in values)
    detractors = sum(v <= 6 for v in values)
    passives = total - promoters - detractors
    score = round(100 * (promoters - detractors) / total, 1)
    return NpsResult(
        total, _share(promoters, total), _share(passives, total), _share(detractors, total), score
    )


def csat(answers: Iterable[int]) -> CsatResult:
    """CSAT = share of answers of 4 or 5 on a 1–5 scale."""
    values = [int(a) for a in answers]
    if any(not 1 <= v <= 5 for v in values):
        raise ValueError("CSAT answers run from 1 to 5")
    satisfied = sum(v >= 4 for v in values)
    return CsatResult(len(values), satisfied, _share(satisfied, len(values)) if values else None)


def distribution(answers: Iterable[int], low: int, high: int) -> list[tuple[int, int]]:
    """How many answers each value from low to high got (zeros included)."""
    counts = Counter(int(a) for a in answers)
    return [(value, counts.get(value, 0)) for value in range(low, high + 1)]
