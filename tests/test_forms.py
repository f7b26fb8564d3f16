"""mailkit.forms, driven from Python: set values, click, read what the form shows."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("ipywidgets")

from mailkit import MailServer  # noqa: E402
from mailkit.forms import frame_builder, login_form, noise_form  # noqa: E402

USERS = {"alice": "wonderland", "bob": "builder"}


@pytest.fixture(scope="module")
def server():
    with MailServer(users=USERS) as srv:
        yield srv


def _shown(form) -> dict:
    """The one display item in the form's output area."""
    (item,) = form.output.outputs
    assert item["output_type"] == "display_data"
    return item["data"]


def test_login_form_shows_the_bytes_each_way(server, capsys):
    form = login_form(server)
    result = form.fill("alice", "wonderland").click()
    text = repr(result)
    assert "client -> server   16 bytes: b'alice:wonderland'" in text
    assert "server -> client   13 bytes: b'OK:" in text
    assert f"session id {form.client.session_id}" in text
    assert _shown(form)["text/plain"] == text
    assert "text/html" in _shown(form)
    assert capsys.readouterr() == ("", "")      # never prints: nbval would see it


def test_login_form_wrong_password_and_bad_username(server):
    form = login_form(server.address)          # a (host, port) pair works too
    wrong = repr(form.fill("alice", "nope").click())
    assert "KO: wrong username or password" in wrong and "login refused" in wrong
    assert form.client is None
    bad = repr(form.fill("alice:x", "y").click())
    assert bad.startswith("nothing sent: bad username 'alice:x'")
    assert "client -> server" not in bad


def test_the_button_does_what_click_does(server):
    form = login_form(server, "bob", "builder")
    form.button.click()                        # ipywidgets calls the on_click handlers
    assert "logged in" in repr(form.result)


def test_text_form_lists_fields_and_result_never_the_password(server):
    form = login_form(server, "alice", "wonderland")
    assert form.text == "Log in:\n  user     'alice'\n  password ••••••••••\n  [Log in]\n  (nothing yet)"
    form.click()
    bundle = form._repr_mimebundle_()
    assert bundle["text/plain"] == form.text and "logged in" in form.text
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "wonderland" not in form.text.split("client -> server")[0]


def test_frame_builder_updates_as_fields_change():
    b = frame_builder()
    first = b.frame
    assert "a 2017 parser (first '#') reads it correctly" in repr(b.result)
    b.body.value = "How are you!"                # observe fires: no click needed
    assert b.frame != first and b.frame.endswith(b.frame[-40:])
    assert repr(b.result).count(b.frame[-40:].decode()) == 2   # in the frame line and the checksum line
    b.body.value = "Meet in room #5"
    assert "answers KO" in repr(b.result) and "answers KO" in _shown(b)["text/plain"]
    b.subject.value = "Re: x"
    assert b"Re#3A x" in b.frame


def test_frame_builder_reports_a_bad_session_id():
    b = frame_builder()
    b.session_id.value = "12ab"
    assert "session id" in repr(b.result) and b.result.kind == "ERROR"


def test_noise_form_is_deterministic_per_seed(server):
    form = noise_form(server, "alice", "wonderland", "bob", rate=0.3, seed=1)
    first = form.click()
    assert first.title.endswith("delivered after 3 attempts")
    assert [e.outcome for e in form.transcript] == ["KO", "KO", "OK"]
    assert "image/svg+xml" in _shown(form)
    again = form.click()
    same = lambda svg: re.sub(r"\b\d{10}\b", "SESSIONID", svg)   # as nbval's sanitize file does
    assert again.text == first.text and same(again.svg) == same(first.svg)


def test_noise_form_reports_a_lost_mail(server):
    form = noise_form(server, "alice", "wonderland", "bob")
    form.rate.value, form.seed.value = 0.5, 4
    result = form.click()
    assert "NOT delivered: email failed after 4 attempts (KO, KO, KO, KO)" in result.title
    assert "flip rate 0.50" in form.text and "seed      4" in form.text


def test_noise_form_without_a_server_says_so():
    with MailServer(users=USERS) as gone:
        address = gone.address
    form = noise_form(address, "alice", "wonderland", "bob")
    result = form.click()
    assert result.kind == "ERROR" and "ServerUnreachable" in repr(result)
