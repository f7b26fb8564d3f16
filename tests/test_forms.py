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
    assert first.title == "delivered after 3 attempts · rate 0.30, seed 1"   # the verdict first
    assert [e.outcome for e in form.transcript] == ["KO", "KO", "OK"]
    assert "image/svg+xml" in _shown(form)
    again = form.click()
    same = lambda svg: re.sub(r"\b\d{10}\b", "SESSIONID", svg)   # as nbval's sanitize file does
    assert again.text == first.text and same(again.svg) == same(first.svg)


def test_noise_form_reports_a_lost_mail(server):
    form = noise_form(server, "alice", "wonderland", "bob")
    form.rate.value, form.seed.value = 0.5, "4"
    result = form.click()
    assert result.title == "NOT delivered: 4 attempts (KO, KO, KO, KO) · rate 0.50, seed 4"
    assert "flip rate 0.50" in form.text and "seed      4" in form.text


def test_noise_form_without_a_server_says_so():
    with MailServer(users=USERS) as gone:
        address = gone.address
    form = noise_form(address, "alice", "wonderland", "bob")
    result = form.click()
    assert result.kind == "ERROR" and "ServerUnreachable" in repr(result)


# -- issue 13: forms that keep working, show only what the student did ---------


def test_run_with_leaves_the_form_as_it_was(server):
    form = login_form(server, "bob", "builder")
    result = form.run_with(user="alice", password="wonderland")
    assert "logged in" in repr(result)
    assert (form.user.value, form.password.value, form.result) == ("bob", "builder", None)
    assert form.output.outputs == () and "(nothing yet)" in form.text
    noise = noise_form(server, "alice", "wonderland", "bob", rate=0.3, seed=1)
    assert noise.run_with(rate=0.5, seed="4").title.startswith("NOT delivered")
    assert (noise.rate.value, noise.seed.value, noise.result) == (0.3, "1", None)
    builder = frame_builder()
    shown = builder.output.outputs
    assert "Meet in room #5" in repr(builder.run_with(body="Meet in room #5"))
    assert builder.body.value == "How are you?" and builder.output.outputs == shown


def test_a_form_with_its_own_server_survives_stop_everything():
    form = login_form(users={"alice": "wonderland"})
    try:
        assert form.server is None                          # nothing started until used
        assert "logged in" in repr(form.fill("alice", "wonderland").click())
        first = form.server.address
        form.server.stop()                  # what stop_everything() in a later cell (or a re-run) does
        assert form.server is not None and not form.server.running
        assert "logged in" in repr(form.click())            # started again, on a new port
        assert form.server.running and first != ("", 0)
        noise = noise_form(None, "alice", "wonderland", "bob", rate=0.0, seed=1)
        assert noise.click().title.startswith("delivered after 1 attempt")
        noise.stop()
        assert noise.server is None
    finally:
        form.stop()


def test_a_stopped_server_gives_one_line_saying_what_to_do():
    srv = MailServer(users=USERS).start()
    form = login_form(srv)
    srv.stop()
    text = repr(form.fill("alice", "wonderland").click())
    assert "\n" not in text and "stopped by a later cell" in text and "RuntimeError" not in text
    srv.close()


def test_seed_must_be_a_whole_number(server):
    form = noise_form(server, "alice", "wonderland", "bob")
    form.seed.value = "2.5"
    result = form.click()
    assert repr(result) == "nothing sent: seed '2.5': type a whole number, e.g. 1"
    form.seed.value = " 4"
    result = form.click()
    assert "seed 4" in getattr(result, "title", repr(result)), repr(result)
    assert "seed 5" in form.run_with(seed=5).title           # an int from code works too


def test_frame_builder_warns_about_recipients_no_server_takes():
    b = frame_builder()
    assert "⚠" not in repr(b.result)
    b.recipient.value = ""
    assert repr(b.result).startswith("⚠ the recipient is empty")
    b.recipient.value = "bo:b"
    assert repr(b.result).startswith("⚠ 'bo:b' cannot be a username (':' separates the fields)")
    assert "⚠" in _shown(b)["text/html"]
    b.recipient.value = "carol"
    assert "⚠" not in repr(b.result)


def test_stable_css_classes_for_browser_tests(server):
    forms = {"mailkit-login-form": login_form(server), "mailkit-frame-builder": frame_builder(),
             "mailkit-noise-form": noise_form(server, "alice", "wonderland", "bob")}
    for name, form in forms.items():
        assert name in form._dom_classes
        assert "mailkit-form-result" in form.output._dom_classes
