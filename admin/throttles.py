"""Sign-in throttles for admins: who is held back, for how long, and a button to let them in again."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, SubmitField
from wtforms.validators import InputRequired, Regexp

from admin.base import StaffView, flash_busy
from models import db, utcnow
from models.sign_in_guard import (
    ACCOUNT,
    ADDRESS,
    DEVICE,
    address_key,
    clear_all_throttles,
    clear_throttle,
    current_throttles,
)
from models.uow import WriteBusy
from models.user import StaffUser
from security import CheckedForm

SCOPE_LABELS = {
    ADDRESS: _l("Address"),
    ACCOUNT: _l("Account"),
    DEVICE: _l("Trusted browser"),
}


class ClearForm(CheckedForm):
    throttle_id = HiddenField(validators=[InputRequired(), Regexp(r"^\d{1,18}$")])
    submit_clear = SubmitField(_l("Clear"))


class ClearAllForm(CheckedForm):
    submit_clear_all = SubmitField(_l("Clear all"))


class SignInThrottleView(StaffView):
    right = "staff.manage"

    @expose("/", methods=("GET", "POST"))
    def index(self):
        one, every = ClearForm(prefix="one"), ClearAllForm(prefix="all")
        try:
            if one.submit_clear.data and one.validate_on_submit():
                with self.unit_of_work():
                    cleared = clear_throttle(int(one.throttle_id.data))
                flash(_("Throttle cleared.") if cleared else _("That throttle had ended already."), "success")
                return redirect(url_for(".index"))
            if every.submit_clear_all.data and every.validate_on_submit():
                with self.unit_of_work():
                    count = clear_all_throttles()
                flash(_("Throttles cleared: %(n)d.", n=count), "success")
                return redirect(url_for(".index"))
        except WriteBusy:
            flash_busy()
        now = utcnow()
        throttles = current_throttles(now)
        staff_ids = {row.staff_user_id for row in throttles if row.staff_user_id is not None}
        staff = (
            {
                user.id: user
                for user in db.session.scalars(sa.select(StaffUser).where(StaffUser.id.in_(staff_ids)))
            }
            if staff_ids
            else {}
        )
        return self.render(
            "admin/sign_in_throttles.html",
            throttles=throttles,
            staff=staff,
            labels=SCOPE_LABELS,
            now=now,
            mine=address_key(request.remote_addr),
            every=every,
            clear_form=one,
        )
