"""Realistic demo data in Chinese and English, for `make run`, screenshots and benchmarks.

Run by `flask bootstrap` and `flask seed-demo`. Everything is written through the domain's
own functions, in units of work acting as the system labelled "demo" (a batch per unit of
work), so the demo leaves the same rows, events and audit trail as real use would.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from demo.loyalty import seed_demo_purchases
from demo.people import seed_demo_customers, seed_demo_staff
from demo.surveys import demo_survey_totals, seed_demo_surveys
from demo.tickets import seed_demo_tickets

__all__ = ["demo_survey_totals", "seed_demo"]


def seed_demo(
    customers: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 1000,
    seed: int | None = None,
    tickets: int = 0,
    purchases: int = 0,
    survey_responses: int = 0,
) -> list[tuple[str, str, str]]:
    """Add demo staff (first time), customers (batch by batch), tickets, purchases and surveys.

    `progress` is told how many items of each kind are done: customers batch by batch, then
    the tickets, the buyers and the survey responses as each phase ends. Returns the demo
    staff accounts made now, as (email, role, password).
    """
    staff = seed_demo_staff()
    rng = random.Random(seed)
    seed_demo_customers(customers, rng, seed=seed, batch_size=batch_size, progress=progress)
    progress = progress or (lambda _done: None)
    if tickets:
        seed_demo_tickets(tickets, rng)
        progress(tickets)
    if purchases:
        seed_demo_purchases(rng, purchases)
        progress(purchases)
    if survey_responses:
        seed_demo_surveys(rng, survey_responses)  # after tickets: resolved ones get rated
        progress(survey_responses)
    return staff
