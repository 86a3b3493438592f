"""CSV import of purchases: every row checked first, then all recorded in one unit of work, or none.

Checking reads only, so a door checks before it opens the unit of work and the write lock is
held only while the checked rows are recorded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import db, utcnow
from models.customer import find_customer
from models.loyalty.programme import LoyaltyError
from models.loyalty.purchases import NewPurchase, Purchase, prepare_purchase, record_checked
from models.uow import current_uow

REQUIRED = ("order_ref", "customer", "amount")
COLUMNS = ("order_ref", "customer", "amount", "currency", "channel", "purchased_at")
MAX_ROWS = 50_000


@dataclass
class RowError:
    line: int
    message: str


@dataclass
class ImportReport:
    rows: int = 0
    recorded: int = 0
    skipped_existing: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class CheckedImport:
    """A file's rows, checked: the purchases to record and the report of what was found."""

    source: str
    specs: list[NewPurchase]
    report: ImportReport


def _parse_row(row: dict, source: str, currency: str, now: datetime) -> NewPurchase:
    missing = [name for name in REQUIRED if not (row.get(name) or "").strip()]
    if missing:
        raise LoyaltyError(f"missing {', '.join(missing)}")
    found = find_customer(row["customer"])
    if found is None:
        raise LoyaltyError(f"no customer matches {row['customer'].strip()!r}")
    customer_id, member_no = found
    try:
        amount = Decimal(row["amount"].strip())
    except InvalidOperation:
        raise LoyaltyError(f"amount {row['amount']!r} is not a number") from None
    when = None
    if (row.get("purchased_at") or "").strip():
        try:
            when = datetime.fromisoformat(row["purchased_at"].strip())
        except ValueError:
            raise LoyaltyError(f"purchased_at {row['purchased_at']!r} is not an ISO date-time") from None
        when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    spec = NewPurchase(
        customer_id,
        source,
        row["order_ref"].strip(),
        amount,
        (row.get("currency") or currency).strip().upper(),
        (row.get("channel") or "store").strip(),
        when,
        member_no,
    )
    prepare_purchase(spec, now)  # the same rules as every other door
    return spec


def check_rows(
    text: str, source: str, currency: str, now: datetime | None = None
) -> tuple[list[NewPurchase], ImportReport]:
    """Parse and check every row; nothing is written."""
    now = now or utcnow()
    report, specs, seen = ImportReport(), list[NewPurchase](), set[str]()
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if not reader.fieldnames or set(REQUIRED) - set(reader.fieldnames):
        report.errors.append(RowError(1, f"the header must name {', '.join(REQUIRED)}"))
        return specs, report
    if unknown:
        report.errors.append(RowError(1, f"unknown columns: {', '.join(sorted(unknown))}"))
    for line, row in enumerate(reader, start=2):
        report.rows += 1
        if report.rows > MAX_ROWS:
            report.errors.append(RowError(line, f"at most {MAX_ROWS} rows per file"))
            break
        try:
            spec = _parse_row(row, source, currency, now)
        except LoyaltyError as exc:
            report.errors.append(RowError(line, str(exc)))
            continue
        if spec.order_ref in seen:
            report.errors.append(RowError(line, f"order {spec.order_ref} appears twice in the file"))
            continue
        seen.add(spec.order_ref)
        specs.append(spec)
    return specs, report


def imported_before(source: str, order_refs: list[str], chunk: int = 500) -> set[str]:
    """Which of these order references the source has recorded already (a query per 500)."""
    found: set[str] = set()
    for start in range(0, len(order_refs), chunk):
        refs = order_refs[start : start + chunk]
        query = sa.select(Purchase.order_ref).where(Purchase.source == source, Purchase.order_ref.in_(refs))
        found.update(db.session.scalars(query))
    return found


def check_import(text: str, source: str, currency: str, now: datetime | None = None) -> CheckedImport:
    """Check every row and count what recording would do (the dry run); reads only."""
    specs, report = check_rows(text, source, currency, now)
    if report.ok:
        before = imported_before(source, [spec.order_ref for spec in specs])
        report.skipped_existing = len(before)
        report.recorded = len(specs) - len(before)
    return CheckedImport(source, specs, report)


def record_import(checked: CheckedImport, now: datetime | None = None) -> ImportReport:
    """Record every checked row not recorded before, in the caller's unit of work: all or none.

    A row that fails now (a concurrent import of the same order with another amount, say)
    undoes the rows recorded so far (a savepoint) and is reported; nothing is recorded then.
    """
    if not checked.report.ok:
        return checked.report
    now = now or utcnow()
    uow = current_uow()
    report = ImportReport(rows=checked.report.rows)
    try:
        with db.session.begin_nested():
            before = imported_before(checked.source, [spec.order_ref for spec in checked.specs])
            for spec in checked.specs:
                if spec.order_ref in before or not record_checked(spec, now).created:
                    report.skipped_existing += 1  # imported before: idempotent by order reference
                else:
                    report.recorded += 1
    except (IntegrityError, LoyaltyError) as exc:
        report.recorded = report.skipped_existing = 0
        report.errors.append(RowError(0, f"nothing was imported: {exc}"))
        return report
    if report.recorded:
        uow.audit(
            "purchase.import",
            "purchase",
            None,
            ["amount", "customer_id", "order_ref", "points"],
            detail=f"rows={report.recorded}",
        )
    return report
