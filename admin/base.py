"""The one base for staff screens: login, role checks, CSRF, auditing and safe CSV export."""

from __future__ import annotations

import csv
import logging
import typing as t
import unicodedata
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    flash,
    g,
    has_app_context,
    redirect,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_admin import AdminIndexView, BaseView, expose
from flask_admin.actions import action
from flask_admin.babel import gettext as admin_gettext
from flask_admin.babel import lazy_gettext as admin_lazy_gettext
from flask_admin.babel import ngettext as admin_ngettext
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_admin.contrib.sqla import tools as sqla_tools
from flask_admin.contrib.sqla.filters import FilterConverter, FilterEqual, FilterNotEqual
from flask_admin.contrib.sqla.form import AdminModelConverter
from flask_admin.form import DateTimeField, SecureForm
from flask_admin.model import filters, typefmt
from flask_admin.model.base import ViewArgs
from flask_admin.model.form import converts
from flask_admin.tools import iterdecode
from flask_babel import format_datetime, get_timezone, ngettext, to_user_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.utils import secure_filename
from wtforms import FileField
from wtforms.meta import DefaultMeta

from models.export import csv_safe
from models.labels import closed_enumeration, label, labels_of
from models.uow import Actor, UnitOfWork, WriteBusy, current_uow, unit_of_work

log = logging.getLogger(__name__)


def staff_actor() -> Actor:
    """The signed-in member of staff, as the actor of a unit of work."""
    return Actor.staff(current_user, request.remote_addr)


def staff_unit_of_work(*, keep_state: bool = False) -> AbstractContextManager[UnitOfWork]:
    """A unit of work on behalf of the signed-in member of staff."""
    return unit_of_work(staff_actor(), keep_state=keep_state)


def flash_busy() -> None:
    """Tell the member of staff that the database was busy and nothing was saved."""
    flash(_("The database was busy; your change was not saved. Please try again."), "error")


def can_view_pii() -> bool:
    """Whether the signed-in member of staff may see personal data unmasked."""
    return bool(current_user.is_authenticated and current_user.can("customer.view_pii"))


class StaffAccess(BaseView):
    """Base of every staff view: it needs a signed-in member of staff holding `right`.

    `endpoint_rights` names further rights for single endpoints of the view
    (e.g. {"export": "customer.export"}); they are checked on top of `right`.
    """

    right: str = "staff.manage"
    endpoint_rights: t.ClassVar[dict[str, str]] = {}

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and current_user.can(self.right))

    def may(self, endpoint: str) -> bool:
        """Whether the current user may use one endpoint of this view."""
        extra = self.endpoint_rights.get(endpoint)
        return self.is_accessible() and (extra is None or current_user.can(extra))

    def _handle_view(self, name: str, **kwargs: t.Any):
        if not self.may(name):
            return self.inaccessible_callback(name, **kwargs)
        if holds_nul(request.args) or holds_nul(request.form):
            # PostgreSQL can neither store nor compare text holding NUL, and no one types one.
            abort(400, description="The request holds a NUL character.")
        if holds_control_character(request.values.get("url") or ""):
            # Flask-Admin 2.2.1 redirects to `url=` (get_redirect_target) after checking only its
            # host: a line break would end up in the Location header (a server error).
            abort(400, description="The return address holds a control character.")
        return super()._handle_view(name, **kwargs)

    def inaccessible_callback(self, name: str, **kwargs: t.Any):
        if not current_user.is_authenticated:
            return redirect(url_for("staff_auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def unit_of_work(self, *, keep_state: bool = False) -> AbstractContextManager[UnitOfWork]:
        """`with self.unit_of_work() as uow:` for a view's own writes (actions, forms)."""
        return staff_unit_of_work(keep_state=keep_state)


def holds_nul(values: t.Any) -> bool:
    """Whether a MultiDict of request values holds a NUL character in a name or a value."""
    return any("\x00" in str(name) or "\x00" in str(value) for name, value in values.items(multi=True))


def holds_control_character(text: str) -> bool:
    """Whether text holds a control character or a line or paragraph separator."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


# The range of each integer type on PostgreSQL (SQLite takes 64 bits): a number outside it
# compared with such a column is a database error, not "no such row".
INTEGER_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))


def comparable(column_type: t.Any, value: t.Any) -> bool:
    """Whether a value from the request can be compared with a column of this type in SQL."""
    if isinstance(value, str) and "\x00" in value:
        return False
    if not isinstance(column_type, sa.Integer) or isinstance(value, bool):
        return True
    try:
        number = int(value)
    except (TypeError, ValueError):
        return False
    bits = next(bits for kind, bits in INTEGER_BITS if isinstance(column_type, kind))
    return -(2 ** (bits - 1)) <= number < 2 ** (bits - 1)


class StaffIndexView(StaffAccess, AdminIndexView):
    """The admin home page, closed to anonymous visitors like every other view."""

    right = "dashboard.view"


class StaffView(StaffAccess, BaseView):
    """A custom (non-model) staff page."""


class LocalTimeFilter:
    """A date-time filter on a UTC column: the times typed are the staff member's wall-clock times.

    Flask-Admin 2.2.1's date-time filters compare the naive time typed, which our UTC column
    type refuses (a server error for every date filter before this).
    """

    def clean(self, value: str) -> t.Any:
        cleaned = super().clean(value)  # type: ignore[misc]
        try:
            if isinstance(cleaned, list):  # between, not between
                return [from_local(moment) for moment in cleaned]
            return from_local(cleaned)
        except OverflowError:  # 0001-01-01 00:00 east of UTC is no time in UTC
            raise ValueError(f"{value} is out of range") from None


class LocalTimeEqual(LocalTimeFilter, sqla_filters.DateTimeEqualFilter):
    pass


class LocalTimeNotEqual(LocalTimeFilter, sqla_filters.DateTimeNotEqualFilter):
    pass


class LocalTimeGreater(LocalTimeFilter, sqla_filters.DateTimeGreaterFilter):
    pass


class LocalTimeSmaller(LocalTimeFilter, sqla_filters.DateTimeSmallerFilter):
    pass


class LocalTimeBetween(LocalTimeFilter, sqla_filters.DateTimeBetweenFilter):
    pass


class LocalTimeNotBetween(LocalTimeFilter, sqla_filters.DateTimeNotBetweenFilter):
    pass


class PatronFilterConverter(FilterConverter):
    """Flask-Admin's filters, plus date-time filters for our UTC timestamp type."""

    local_time_filters = (
        LocalTimeEqual,
        LocalTimeNotEqual,
        LocalTimeGreater,
        LocalTimeSmaller,
        LocalTimeBetween,
        LocalTimeNotBetween,
        sqla_filters.FilterEmpty,
    )

    @filters.convert("utcdatetime")
    def conv_utc_datetime(self, column, name, **kwargs):
        return [kind(column, name, **kwargs) for kind in self.local_time_filters]


def staff_zone() -> ZoneInfo:
    """The time zone the signed-in member of staff works in."""
    return ZoneInfo(str(get_timezone()))


def from_local(moment: datetime) -> datetime:
    """A wall-clock time in the staff member's zone, as an aware UTC datetime."""
    return moment.replace(tzinfo=staff_zone()).astimezone(UTC)


class LocalDateTimeField(DateTimeField):
    """A timestamp shown and typed in the staff member's time zone, stored in UTC."""

    data: datetime | None

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        return to_user_timezone(self.data).strftime(self.format[0]) if self.data else ""

    def process_formdata(self, valuelist) -> None:
        super().process_formdata(valuelist)
        if self.data is not None and self.data.tzinfo is None:
            try:
                self.data = from_local(self.data)
            except OverflowError:  # 0001-01-01 00:00 east of UTC, 9999-12-31 23:59 west of it
                self.data = None
                raise ValueError(self.gettext("Not a valid datetime value.")) from None


class PatronModelConverter(AdminModelConverter):
    """Flask-Admin's form fields, plus one for our UTC timestamp type (else silently left out)."""

    @converts("UTCDateTime")
    def convert_utc_datetime(self, field_args, **extra):
        return LocalDateTimeField(**field_args)


def local_time(view, value: datetime, name: str) -> str:
    """A timestamp in the viewer's time zone, to the minute."""
    return format_datetime(value, "yyyy-MM-dd HH:mm")


def local_time_iso(view, value: datetime, name: str) -> str:
    """A timestamp for export: ISO 8601 with the viewer's UTC offset."""
    return to_user_timezone(value).isoformat(timespec="seconds")


def as_code(view, context, model, name: str) -> Markup:
    """An identifier someone typed (a category code, an integration's source), shown as such."""
    value = getattr(model, name)
    return Markup("<code>{}</code>").format(value) if value else Markup(NOTHING)


def yes_no(view, value: bool, name: str) -> str:
    """A yes-or-no column as a word in the reader's language (never True/False)."""
    return _("Yes") if value else _("No")


NOTHING = "—"


def nothing(view, value: None, name: str) -> str:
    """An empty value on screen: a dash, never "None"."""
    return NOTHING


def nothing_exported(view, value: None, name: str) -> str:
    """An empty value in an export: an empty cell."""
    return ""


def live_options(source: t.Callable[[], list]) -> t.Callable[[], list]:
    """Filter options read from the database on each request (empty while the app starts)."""

    def options() -> list:
        return source() if has_app_context() else []

    return options


class _Echo:
    """A file-like object whose write() hands the line back, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def stream_csv(filename: str, header: list, rows: t.Iterable[list], session) -> Response:
    """A CSV download streamed row by row: BOM for spreadsheets, every cell formula-safe.

    `session` is the database session the rows are read from; it is closed after the last
    row (the app context's teardown has already closed it once, before the rows were read,
    and PostgreSQL would otherwise keep the transaction open).
    """
    writer = csv.writer(_Echo())

    def lines() -> t.Iterator[str]:
        yield "\ufeff" + writer.writerow([str(cell) for cell in header])
        try:
            for row in rows:
                yield writer.writerow([csv_safe(cell) for cell in row])
        finally:
            session.close()

    return Response(
        stream_with_context(lines()),
        headers={"Content-Disposition": f"attachment; filename={secure_filename(filename)}"},
        mimetype="text/csv",
    )


def _really_changed(history: t.Any) -> bool:
    if not history.has_changes():
        return False
    # An edit that puts "" where there was nothing (NULL) changes nothing; on a new row (nothing
    # before at all) every field given counts.
    before, after = list(history.deleted), list(history.added)
    return not (len(before) == 1 and not before[0] and len(after) <= 1 and not any(after))


class StaffForm(SecureForm):
    """Flask-Admin's session-CSRF form, whose text fields never receive a file part."""

    class Meta(DefaultMeta):
        def wrap_formdata(self, form, formdata):
            # Flask-Admin 2.2.1 (helpers.get_form_data) hands every field the request's file parts
            # too: a text field given one fails inside its validators, a server error (which
            # BaseView._run_view even retries). Here a text field sent as a file is missing, and
            # so is a multipart part without a name (its key None breaks Flask-Admin's inline
            # lists).
            formdata = super().wrap_formdata(form, formdata)
            if not formdata:
                return formdata
            takes_files = {field.name for field in form if isinstance(field, FileField)}
            items = list(formdata.items(multi=True))
            kept = [
                (name, value)
                for name, value in items
                if isinstance(name, str) and (name in takes_files or not isinstance(value, FileStorage))
            ]
            return formdata if len(kept) == len(items) else MultiDict(kept)


class StaffModelView(StaffAccess, ModelView):
    """Model screens: SecureForm CSRF on every form, audit of every change, safe export."""

    form_base_class = StaffForm
    model_form_converter = PatronModelConverter
    filter_converter = PatronFilterConverter()
    column_type_formatters = typefmt.BASE_FORMATTERS | {
        type(None): nothing,
        bool: yes_no,
        datetime: local_time,
    }
    column_type_formatters_detail = typefmt.DETAIL_FORMATTERS | {
        type(None): nothing,
        bool: yes_no,
        datetime: local_time,
    }
    column_type_formatters_export = typefmt.EXPORT_FORMATTERS | {
        type(None): nothing_exported,
        bool: yes_no,
        datetime: local_time_iso,
    }
    # The audit log names fields, never their values.
    audit_type: str = ""
    page_size = 20
    can_set_page_size = True
    export_types = ["csv"]
    export_batch_size = 500

    # What an empty list says, and what to do next (templates/admin/model/list.html): a view may
    # name its records ("No tickets yet.") and say where they come from when it cannot create.
    empty_message: t.Any = _l("Nothing here yet.")
    empty_hint: t.Any = _l("Records appear here as they are made elsewhere in the panel.")

    def __init__(self, model: t.Any, *args: t.Any, **kwargs: t.Any) -> None:
        # Code columns (status, channel, language, ...) and their labels, from models/labels.py;
        # read before Flask-Admin scaffolds the filters.
        self.code_labels = labels_of(model)
        super().__init__(model, *args, **kwargs)

    # Written after Flask-Admin 2.2.1's BaseModelView._get_list_value (list, details and export
    # all go through it): a code column without a formatter or choices of the view's own shows
    # its label.
    def _get_list_value(self, context, model, name, column_formatters, column_type_formatters) -> t.Any:
        labels = self.code_labels.get(name) if isinstance(name, str) else None
        if labels is not None and name not in column_formatters and name not in self._column_choices_map:
            value = self._get_field_value(model, name)
            if value is not None and value != "":
                return label(labels, value)
        return super()._get_list_value(context, model, name, column_formatters, column_type_formatters)

    def scaffold_filters(self, name: t.Any) -> t.Any:
        """Flask-Admin's filters; an equality filter on a code column offers the labels to pick from."""
        found = super().scaffold_filters(name)
        labels = self.code_labels.get(name) if isinstance(name, str) else None
        if labels and found and closed_enumeration(self.model, name):
            options = tuple(labels.items())  # lazy labels: read in the reader's language per page
            for flt in found:
                if isinstance(flt, FilterEqual | FilterNotEqual) and not flt.options:
                    flt.options = options
        return found

    # Flask-Admin 2.2.1 (flask_admin/model/base.py: create_view, edit_view, delete_view) flashes
    # "Record was successfully created." and the like after a save; here that flash is replaced
    # by one naming the record (create_model & co. leave its name in g).
    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> t.Any:
        response = super().create_view()
        self._reword_flash(admin_gettext("Record was successfully created."), "create")
        return response

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> t.Any:
        response = super().edit_view()
        self._reword_flash(admin_gettext("Record was successfully saved."), "edit")
        return response

    @expose("/delete/", methods=("POST",))
    def delete_view(self) -> t.Any:
        response = super().delete_view()
        stock = admin_ngettext(
            "Record was successfully deleted.", "%(count)s records were successfully deleted.", 1, count=1
        )
        self._reword_flash(stock, "delete")
        return response

    @staticmethod
    def _saved_message(change: str, name: str | None) -> str:
        """What a flash says after a create, edit or delete, naming the record when it can."""
        if change == "create":
            return _("Created “%(name)s”.", name=name) if name else _("Created.")
        if change == "edit":
            return _("Saved “%(name)s”.", name=name) if name else _("Saved.")
        return _("Deleted “%(name)s”.", name=name) if name else _("Deleted.")

    def _reword_flash(self, stock: str, change: str) -> None:
        """Replace Flask-Admin's stock flash (as its own catalogue translated it) by ours."""
        name = g.pop("patron_record_name", None)
        flashes = session.get("_flashes") or []
        if any(message == stock for _category, message in flashes):
            mine = self._saved_message(change, name)
            session["_flashes"] = [(kind, mine if message == stock else message) for kind, message in flashes]

    @staticmethod
    def _remember_record(model: t.Any) -> None:
        """Keep the name of the record just saved or deleted, for the flash that says so."""
        g.patron_record_name = str(model)

    # Buttons follow the rights, so nobody is shown an action that would answer 403. A view
    # that never allows one sets it to False as a class attribute.
    @property
    def can_create(self) -> bool:
        return self.may("create_view")

    @property
    def can_edit(self) -> bool:
        return self.may("edit_view")

    @property
    def can_delete(self) -> bool:
        return self.may("delete_view")

    # Rights for single list actions, on top of the right to use the action endpoint.
    action_rights: t.ClassVar[dict[str, str]] = {}

    def is_action_allowed(self, name: str) -> bool:
        right = self.action_rights.get(name)
        return super().is_action_allowed(name) and (right is None or current_user.can(right))

    # The largest page number a list URL may ask for: far beyond any table, still a valid OFFSET.
    max_page = 10**9

    def get_one(self, id: t.Any) -> t.Any:
        """The record with this key; an id that cannot be one (`?id=1,2`, `?id=abc`) is a 404."""
        if not isinstance(id, str):
            abort(404)  # `?id=1&id=2`
        columns = sa.inspect(self.model).primary_key
        values = iterdecode(id)
        if len(values) != len(columns) or not all(
            comparable(column.type, value) for column, value in zip(columns, values, strict=True)
        ):
            abort(404)
        return super().get_one(id)

    # Written after Flask-Admin 2.2.1 (flask_admin/model/base.py), whose list arguments go to the
    # database as given: a negative or huge `page`, or a filter value that is no number for a
    # number column (`flt1_3=abc` on a FilterEqual), is a database error on PostgreSQL.
    def _get_list_extra_args(self) -> ViewArgs:
        args = super()._get_list_extra_args()
        page = min(max(args.page or 0, 0), self.max_page)
        filters = []
        for idx, name, value in args.filters or ():
            flt = self._filters[idx]  # type: ignore[index]  # set whenever args.filters is
            if self._filter_value_fits(flt, value):
                filters.append((idx, name, value))
            else:
                flash(self.get_invalid_value_msg(value, flt), "error")
        return args.clone(page=page, filters=filters or None)

    def get_list(
        self,
        page: int | None,
        sort_column: t.Any,
        sort_desc: bool,
        search: str | None,
        filters: t.Any,
        execute: bool = True,
        page_size: int | None = None,
    ) -> t.Any:
        """Flask-Admin's list query, with the value of an equality filter on a number column a number.

        FilterEqual passes its value on as typed, a str, which SQLAlchemy compares with an integer
        column as text: PostgreSQL refuses `integer = character varying` (the ticket list's
        category and owner filters).
        """
        typed = [(idx, name, self._typed_filter_value(idx, value)) for idx, name, value in filters or ()]
        return super().get_list(
            page, sort_column, sort_desc, search, typed or filters, execute=execute, page_size=page_size
        )

    def _typed_filter_value(self, idx: int, value: t.Any) -> t.Any:
        flt = self._filters[idx]  # type: ignore[index]  # set whenever there are filters
        column_type = getattr(getattr(flt, "column", None), "type", None)
        if isinstance(flt, FilterEqual | FilterNotEqual) and isinstance(column_type, sa.Integer):
            try:
                return int(value)
            except (TypeError, ValueError):
                return value  # refused earlier, when the list arguments were read
        return value

    @staticmethod
    def _filter_value_fits(flt: t.Any, value: str) -> bool:
        """Whether a filter's value can be compared with its column (a list filter: each item)."""
        column_type = getattr(getattr(flt, "column", None), "type", None)
        if column_type is None:
            return "\x00" not in value
        try:
            cleaned = flt.clean(value)
        except (TypeError, ValueError):
            return False
        items = cleaned if isinstance(cleaned, list | tuple) else [cleaned]
        return all(comparable(column_type, item) for item in items)

    def _get_filter_groups(self):
        # Flask-Admin computes filter options once at start-up; options that come from the
        # database (owners, categories) must be read again for each page.
        if any(callable(getattr(flt, "options", None)) for flt in self._filters or ()):
            self._refresh_filters_cache()
        return super()._get_filter_groups()

    def audit_name(self) -> str:
        return self.audit_type or self.model.__tablename__

    def changed_fields(self, model: t.Any) -> list[str]:
        """Names of the mapped attributes that this request changed on the model.

        An empty form field over an empty column (NULL before, "" now) is no change.
        """
        state = sa.inspect(model)
        return [attr.key for attr in state.attrs if _really_changed(attr.history)]

    # Flask-Admin's create/update/delete, each in one unit of work (its audit event in the same
    # transaction). Written after Flask-Admin 2.2.1's flask_admin/contrib/sqla/view.py, whose
    # versions commit and roll back the session by themselves.
    def create_model(self, form) -> bool | t.Any:
        try:
            # No autoflush until on_model_change has read what changed (a flush forgets it).
            with self.unit_of_work() as uow, uow.session.no_autoflush:
                model = self.build_new_instance()
                form.populate_obj(model)
                uow.add(model)
                self._on_model_change(form, model, True)
        except Exception as exc:
            if not self.handle_view_exception(exc):
                # Flask-Admin's own message, translated by its own catalogue.
                flash(admin_gettext("Failed to create record. %(error)s", error=str(exc)), "error")
                log.exception("Failed to create record.")
            return False
        self._remember_record(model)
        self.after_model_change(form, model, True)
        return model

    def update_model(self, form, model) -> bool:
        try:
            with self.unit_of_work() as uow, uow.session.no_autoflush:
                # The unit of work ended the read transaction the model was loaded in: read it
                # again inside the write transaction, so that the audited field list names
                # exactly what this save changes (and no autoflush until it has been read).
                uow.session.refresh(model)
                form.populate_obj(model)
                self._on_model_change(form, model, False)
        except Exception as exc:
            if not self.handle_view_exception(exc):
                # Flask-Admin's own message, translated by its own catalogue.
                flash(admin_gettext("Failed to update record. %(error)s", error=str(exc)), "error")
                log.exception("Failed to update record.")
            return False
        self._remember_record(model)
        self.after_model_change(form, model, False)
        return True

    def delete_model(self, model) -> bool:
        try:
            with self.unit_of_work() as uow:
                uow.session.refresh(model)
                self._remember_record(model)
                self.on_model_delete(model)
                uow.session.flush()
                uow.session.delete(model)
        except Exception as exc:
            if not self.handle_view_exception(exc):
                # Flask-Admin's own message, translated by its own catalogue.
                flash(admin_gettext("Failed to delete record. %(error)s", error=str(exc)), "error")
                log.exception("Failed to delete record.")
            return False
        self.after_model_delete(model)
        return True

    # Flask-Admin 2.2.1's bulk delete passes the ticked ids on as strings, which PostgreSQL
    # refuses against an integer key (integer = character varying), and commits each row on
    # its own. Here the ids are read as the key's type and the rows go in one unit of work.
    @action(
        "delete",
        admin_lazy_gettext("Delete"),
        admin_lazy_gettext("Are you sure you want to delete selected records?"),
    )
    def action_delete(self, ids: t.Sequence[str]) -> None:
        key_type = sa.inspect(self.model).primary_key[0].type.python_type
        try:
            keys = tuple(key_type(i) for i in ids)
        except ValueError:
            abort(400)
        try:
            with self.unit_of_work() as uow:
                rows = sqla_tools.get_query_for_ids(self.get_query(), self.model, keys).all()
                for row in rows:
                    self.on_model_delete(row)
                    uow.session.flush()
                    uow.session.delete(row)
        except Exception as exc:
            if not self.handle_view_exception(exc):
                raise
            flash(admin_gettext("Failed to delete records. %(error)s", error=str(exc)), "error")
            return
        flash(ngettext("Deleted %(num)d record.", "Deleted %(num)d records.", len(rows)), "success")

    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, WriteBusy):
            flash_busy()
            return True
        return super().handle_view_exception(exc)

    def on_model_change(self, form, model, is_created: bool) -> None:
        """Audit create/edit in the same unit of work as the change."""
        uow = current_uow()
        action = "create" if is_created else "edit"
        fields = self.changed_fields(model)  # before the flush, which forgets what changed
        uow.session.flush()  # the change first (a new row's id), then its audit event
        uow.audit(f"{self.audit_name()}.{action}", self.audit_name(), model.id, fields)

    def on_model_delete(self, model) -> None:
        current_uow().audit(f"{self.audit_name()}.delete", self.audit_name(), model.id)

    # Export: streamed from the database in batches, cells made safe for spreadsheets.
    def export_query(self) -> t.Any:
        """The query of the current list (search, filters, sort) without paging."""
        view_args = self._get_list_extra_args()
        sort = self._get_column_by_idx(view_args.sort)
        _count, query = self.get_list(
            0,
            sort[0] if sort else None,
            view_args.sort_desc,
            view_args.search,
            view_args.filters,
            execute=False,
            page_size=0,
        )
        return query

    def audit_export(self, count: int) -> None:
        with self.unit_of_work() as uow:
            uow.audit(
                f"{self.audit_name()}.export",
                self.audit_name(),
                None,
                [name for name, _label in self._export_columns],
                detail=f"rows={count}",
            )

    def _export_csv(self, return_url: t.Any) -> Response:
        query = self.export_query()
        count = query.order_by(None).count()
        self.audit_export(count)
        # The unit of work expired every loaded object, the signed-in user included. Read the
        # user again now: the rows are formatted after the request's session has closed, and
        # formatters check the user's rights (can_view_pii); an expired user could not be read
        # then (DetachedInstanceError, a 500 in the middle of the download).
        user = current_user._get_current_object()
        if sa.inspect(user).expired:
            query.session.refresh(user)
        columns = list(self._export_columns)
        rows = (
            [self.get_export_value(model, name) for name, _label in columns]
            for model in query.yield_per(self.export_batch_size)
        )
        header = [label for _name, label in columns]
        return stream_csv(self.get_export_name(export_type="csv"), header, rows, query.session)
