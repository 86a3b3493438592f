"""Satisfaction scores by their standard definitions: NPS and CSAT (pure functions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from models.surveys.scales import SCALES, csat_band, nps_band


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


def _checked(answers: Iterable[int], kind: str, name: str) -> list[int]:
    values = [int(a) for a in answers]
    low, high = SCALES[kind]
    if any(not low <= v <= high for v in values):
        raise ValueError(f"{name} answers run from {low} to {high}")
    return values


def nps(answers: Iterable[int]) -> NpsResult:
    """NPS = % promoters (9–10) − % detractors (0–6); passives are 7–8 (bands in models.surveys.scales)."""
    values = _checked(answers, "nps", "NPS")
    total = len(values)
    if not total:
        return NpsResult(0, None, None, None, None)
    bands = Counter(nps_band(v) for v in values)
    promoters, passives, detractors = bands["promoter"], bands["passive"], bands["detractor"]
    score = round(100 * (promoters - detractors) / total, 1)
    return NpsResult(
        total, _share(promoters, total), _share(passives, total), _share(detractors, total), score
    )


def csat(answers: Iterable[int]) -> CsatResult:
    """CSAT = share of answers of 4 or 5 on a 1–5 scale (the band in models.surveys.scales)."""
    values = _checked(answers, "rating", "CSAT")
    satisfied = sum(csat_band(v) == "satisfied" for v in values)
    return CsatResult(len(values), satisfied, _share(satisfied, len(values)) if values else None)


def distribution(answers: Iterable[int], low: int, high: int) -> list[tuple[int, int]]:
    """How many answers each value from low to high got (zeros included)."""
    counts = Counter(int(a) for a in answers)
    return [(value, counts.get(value, 0)) for value in range(low, high + 1)]
