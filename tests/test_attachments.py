"""Files on ticket messages: checked by content, sealed outside the web root, served only to staff."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import url_for

import config
from demo.tickets import demo_pdf, demo_png
from models import crypto, db, keys
from models.crypto import KeyRing, new_key
from models.tickets.attachments import TicketAttachment, safe_name
from models.tickets.ticket import Ticket, TicketMessage
from tests.conftest import csrf_token
from tests.factories import audit_events, failing_after_insert, make_ticket

PNG = demo_png()
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200


def page_of(ticket: Ticket) -> str:
    return f"/admin/tickets/ticket/{ticket.id}"


def reply_with(
    client, ticket: Ticket, files: list[tuple[bytes, str]], body: str = "See attached", kind="note"
):
    token = csrf_token(client.get(page_of(ticket)).text)
    data = {"kind": kind, "body": body, "csrf_token": token, "files": [(io.BytesIO(b), n) for b, n in files]}
    return client.post(f"{page_of(ticket)}/reply", data=data, content_type="multipart/form-data")


def folder(app) -> Path:
    return Path(app.instance_path) / "attachments"


def stored_files(app) -> list[str]:
    return sorted(os.listdir(folder(app))) if folder(app).exists() else []


def attachments() -> list[TicketAttachment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(TicketAttachment).order_by(TicketAttachment.id)))


def test_a_file_is_stored_sealed_private_and_outside_static(app, client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    response = reply_with(client, ticket, [(PNG, "photo.png")])
    assert response.status_code == 302
    (row,) = attachments()
    assert (row.original_name, row.content_type, row.size) == ("photo.png", "image/png", len(PNG))
    assert row.sha256 == hashlib.sha256(PNG).hexdigest()
    path = folder(app) / row.stored_name
    assert stored_files(app) == [row.stored_name] and len(row.stored_name) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.resolve().is_relative_to(Path(app.static_folder).resolve())
    assert PNG not in path.read_bytes() and b"PNG" not in path.read_bytes()  # sealed at rest
    assert [e.detail for e in audit_events("ticket.attachment")] == ["1"]


def test_an_agent_downloads_the_file_as_an_attachment_of_its_detected_type(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "照片.png")])
    (row,) = attachments()
    response = client.get(f"{page_of(ticket)}/attachment/{row.id}")
    assert response.status_code == 200 and response.data == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"attachment.png\"; filename*=UTF-8''%E7%85%A7%E7%89%87.png"
    )
    assert [e.detail for e in audit_events("ticket.attachment_view")] == [str(row.id)]


def test_a_png_named_pdf_is_stored_as_a_png(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "invoice.pdf")])
    assert [(r.original_name, r.content_type) for r in attachments()] == [("invoice.png", "image/png")]


def test_pdf_text_and_word_files_are_accepted_by_their_content(client, auth):
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    ticket, _ = make_ticket()
    auth.login("agent")
    files = [(demo_pdf(), "note"), ("通话记录\n".encode(), "call.log"), (docx.getvalue(), "letter.docx")]
    assert reply_with(client, ticket, files).status_code == 302
    assert [(r.original_name, r.content_type) for r in attachments()] == [
        ("note.pdf", "application/pdf"),
        ("call.log", "text/plain"),
        ("letter.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ]


def test_a_program_named_png_is_refused_the_reply_kept_and_nothing_stored(app, client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    response = reply_with(client, ticket, [(PNG, "fine.png"), (EXE, "cat.png")], body="Here are the photos")
    assert response.status_code == 400
    assert (
        "“cat.png” is not an allowed kind of file (PDF, PNG, JPEG, GIF, WebP, TXT, DOCX, XLSX)."
        in response.text
    )
    assert "Here are the photos</textarea>" in response.text
    assert attachments() == [] and stored_files(app) == []
    assert [m.kind for m in db.session.get_one(Ticket, ticket.id).messages] == ["inbound"]


@pytest.mark.parametrize("app_config", [{"ATTACHMENT_MAX_BYTES": 1000}])
def test_a_file_over_the_size_limit_is_refused_with_the_reply_kept(app, client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    response = reply_with(client, ticket, [(b"a" * 1001, "big.txt")], body="Log attached")
    assert response.status_code == 400
    assert "“big.txt” is larger than the limit of 1,000 bytes." in response.text
    assert "Log attached</textarea>" in response.text
    assert attachments() == [] and stored_files(app) == []


def test_an_analyst_cannot_download_and_sees_no_file_names(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "passport.png")])
    (row,) = attachments()
    auth.logout()
    auth.login("analyst")
    assert client.get(f"{page_of(ticket)}/attachment/{row.id}").status_code == 403
    page = client.get(page_of(ticket)).text
    assert "passport" not in page and "File (hidden: personal data)" in page


def test_an_anonymous_visitor_is_sent_to_sign_in(client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "photo.png")])
    (row,) = attachments()
    auth.logout()
    response = client.get(f"{page_of(ticket)}/attachment/{row.id}")
    assert response.status_code == 302 and response.location.startswith("/login?next=")


def test_a_file_is_found_only_through_its_own_ticket(client, auth):
    ticket, _ = make_ticket()
    other, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "photo.png")])
    (row,) = attachments()
    assert client.get(f"{page_of(other)}/attachment/{row.id}").status_code == 404


def test_a_reply_that_fails_after_its_file_was_written_leaves_no_file(app, client, auth):
    ticket, _ = make_ticket()
    auth.login("agent")
    with failing_after_insert("ticket_attachment", "1 = 1"):
        with pytest.raises(sa.exc.DBAPIError, match="failed by the test"):
            reply_with(client, ticket, [(PNG, "photo.png")])
    assert attachments() == [] and stored_files(app) == []
    assert db.session.scalars(sa.select(TicketMessage.kind)).all() == ["inbound"]


def test_the_public_tracking_page_never_shows_files(app, client, auth):
    ticket, code = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "receipt-photo.png")], body="Your receipt", kind="outbound")
    auth.logout()
    with app.test_request_context():
        track = url_for("surveys.track", code=code, _external=False)
    page = client.get(track).text
    assert "Your receipt" in page
    assert "receipt-photo" not in page and "/attachment/" not in page


def test_names_lose_paths_and_control_characters_and_keep_chinese():
    assert safe_name("../../etc/passwd.txt", "text/plain") == "passwd.txt"
    assert safe_name("C:\\Users\\li\\发票 11月.pdf", "application/pdf") == "发票 11月.pdf"
    assert safe_name('a\x00b<>"c.jpeg', "image/jpeg") == "a_b_c.jpeg"
    assert safe_name("...", "image/png") == "attachment.png"


def add_a_second_key(app, key_material) -> None:
    """Keys kept in the instance folder (as the key commands expect), then a newer key added."""
    os.makedirs(app.instance_path, exist_ok=True)
    config.save_key_material(app.instance_path, key_material)
    app.config["PATRON_KEY_MATERIAL"] = None
    material = config.load_key_material(app.instance_path)
    material["encryption_keys"][2] = new_key()
    config.save_key_material(app.instance_path, material)
    app.extensions["patron.keyring"] = KeyRing.from_material(material)


def test_rotation_reseals_attachment_files_so_the_old_key_can_be_retired(
    app, client, auth, runner, key_material
):
    ticket, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "photo.png")])
    (before,) = attachments()
    old_name, sha256 = before.stored_name, before.sha256
    add_a_second_key(app, key_material)
    result = runner.invoke(args=["rotate-keys", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    (after,) = attachments()
    assert (after.key_version, after.sha256, after.original_name) == (2, sha256, "photo.png")
    assert stored_files(app) == [after.stored_name] and after.stored_name != old_name
    assert runner.invoke(args=["retire-key", "1"]).exit_code == 0
    app.extensions["patron.keyring"] = KeyRing.from_material(config.load_key_material(app.instance_path))
    response = client.get(f"{page_of(ticket)}/attachment/{after.id}")
    assert response.status_code == 200 and response.data == PNG
    files = [e.detail for e in audit_events("key.rotate") if e.object_type == "ticket_attachment"]
    assert files == ["rows=1"]


def test_retire_key_refuses_while_an_attachment_file_still_uses_it(
    app, client, auth, runner, key_material, monkeypatch
):
    ticket, _ = make_ticket()
    auth.login("agent")
    reply_with(client, ticket, [(PNG, "photo.png")])
    add_a_second_key(app, key_material)
    # The database values are sealed again, the file is not.
    with monkeypatch.context() as patch:
        patch.setattr(crypto, "SEALED_FILES", [])
        patch.setattr(keys, "SEALED_FILES", [])
        assert runner.invoke(args=["rotate-keys", "--batch-size", "50"]).exit_code == 0
    result = runner.invoke(args=["retire-key", "1"])
    assert result.exit_code != 0
    assert "1 values still use key 1" in result.output
    assert list(config.load_key_material(app.instance_path)["encryption_keys"]) == [1, 2]
