"""Who the demo data is written by: the system labelled "demo", in every audit event."""

from __future__ import annotations

from dataclasses import replace

from models.uow import Actor

DEMO = Actor.system("demo")


def acting_for(staff) -> Actor:
    """The demo playing a member of staff's part: audited as "demo", the ticket history names them.

    A ticket's history and its replies record the staff member the unit of work acts for;
    the demo makes them look worked on by the demo agents, while the audit log still says
    that the demo did it.
    """
    return replace(DEMO, staff_id=int(staff.id))
