"""The answer scales and their bands, written once: NPS 0–10 and CSAT (rating) 1–5.

Models, insights and the admin screens all read the bands from here, so that a promoter,
a satisfied customer and a detractor who needs a follow-up mean the same everywhere.
"""

from __future__ import annotations

import typing as t

# The lowest and highest answer of each numeric question kind.
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "rating": (1, 5)}

# NPS by its standard definition: promoters 9–10, passives 7–8, detractors 0–6.
NPS_PROMOTER_MIN = 9
NPS_PASSIVE_MIN = 7
# CSAT: the share of 4 and 5 answers on the 1–5 scale.
CSAT_SATISFIED_MIN = 4
# Follow-up tickets: an NPS at or under the survey's threshold (this by default), or a CSAT of 1–2.
DETRACTOR_NPS = NPS_PASSIVE_MIN - 1
DETRACTOR_CSAT = 2

NpsBand = t.Literal["promoter", "passive", "detractor"]
CsatBand = t.Literal["satisfied", "neutral", "dissatisfied"]


def nps_band(value: int) -> NpsBand:
    """Where an NPS answer (0–10) falls: promoter, passive or detractor."""
    if value >= NPS_PROMOTER_MIN:
        return "promoter"
    return "passive" if value >= NPS_PASSIVE_MIN else "detractor"


def csat_band(value: int) -> CsatBand:
    """Where a CSAT answer (1–5) falls: satisfied (4–5), dissatisfied (1–2) or neutral (3)."""
    if value >= CSAT_SATISFIED_MIN:
        return "satisfied"
    return "dissatisfied" if value <= DETRACTOR_CSAT else "neutral"


def needs_follow_up(kind: str, number: int | None, nps_threshold: int = DETRACTOR_NPS) -> bool:
    """Whether an answer calls for a follow-up ticket: NPS at or under the threshold, or CSAT 1–2."""
    if number is None:
        return False
    if kind == "nps":
        return number <= nps_threshold
    return kind == "rating" and number <= DETRACTOR_CSAT
