"""The mail-client app driven from Python: set values, click, read what it shows.

No browser here (tests/test_browser*.py have one): ipywidgets work without a
front end, and ``button.click()`` runs the same handlers a click in Lab does.
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time

import pytest

pytest.importorskip("ipywidgets")

from conftest import wait_for  # noqa: E402
from mailkit import (  # noqa: E402
    LoginFailed, MailServer, NotLoggedIn, RetriesExhausted, ServerError, ServerUnreachable,
)
from mailkit.protocol import LocalProtocolError  # noqa: E402
from mailkit.trace import Exchange, Transcript  # noqa: E402
from mailkit.widgets import MailClientApp, default_address, describe_error, parse_address  # noqa: E402
from mailkit.widgets import views  # noqa: E402

USERS = {"alice": "wonderland", "bob": "builder", "carol": "lamb"}


@pytest.fixture
def mail_server():
    with MailServer(USERS) as server:
        yield server


@pytest.fixture
def apps():
    """Every app a test makes is closed afterwards (worker and poll threads stop)."""
    made = []

    def make(*args, **kwargs):
        app = MailClientApp(*args, **kwargs)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def text(widget) -> str:
    """What an HTML widget shows, without the tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def status(app) -> tuple[str, str]:
    kinds = [c.rsplit("-", 1)[1] for c in app.ui.status._dom_classes if c.startswith("mailkit-status-")]
    assert len(kinds) == 1, app.ui.status._dom_classes
    return kinds[0], text(app.ui.status)


def log_in(app, password: str, user: str | None = None):
    if user is not None:
        app.ui.user.value = user
    app.ui.password.value = password
    app.ui.login.click()
    return app.wait()


def compose(app, to: str, subject: str, body: str):
    app.ui.to.value, app.ui.subject.value, app.ui.body.value = to, subject, body
    app.ui.send.click()
    return app.wait()


# -- views: plain functions ------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1:2525", ("127.0.0.1", 2525)),
    (" mail.example.org:25 ", ("mail.example.org", 25)),
    ("classroom", ("classroom", 2525)),
    ("[::1]:8025", ("::1", 8025)),
    ("[::1]", ("::1", 2525)),
])
def test_parse_address(given, expected):
    assert parse_address(given) == expected


@pytest.mark.parametrize("given", ["", "   ", "host:", "host:port", "host:0", "host:70000", ":25", "[::1]x",
                                   "host:25:26", "http://127.0.0.1:2525", "bad host:25", "[nohost]:25",
                                   "127.0.0.1/24", "-x-:25"])
def test_parse_address_says_what_it_expected(given):
    with pytest.raises(ValueError, match="HOST"):
        parse_address(given)


def test_default_address(mail_server, monkeypatch):
    monkeypatch.delenv(views.ENV_SERVER, raising=False)
    host, port = mail_server.address
    assert default_address(mail_server) == f"{host}:{port}"
    assert default_address(("0.0.0.0", 2600)) == "127.0.0.1:2600"     # bound to all: use loopback
    assert default_address("[::]:2600") == "[::]:2600"
    assert default_address("class.example.org:2525") == "class.example.org:2525"
    assert default_address() == "127.0.0.1:2525"                     # `python -m mailkit serve`
    monkeypatch.setenv(views.ENV_SERVER, "teacher.local:2626")
    assert default_address() == "teacher.local:2626"
    assert default_address(mail_server) == f"{host}:{port}"          # explicit wins


def test_default_address_finds_the_notebooks_server(mail_server, monkeypatch):
    """In a notebook, the form starts at the running MailServer in the user's variables."""
    import IPython

    class Shell:
        user_ns = {"_": None, "stopped": MailServer(USERS), "server": mail_server, "x": 1}

    monkeypatch.delenv(views.ENV_SERVER, raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert default_address() == "%s:%d" % mail_server.address
    Shell.user_ns = {"nothing": 1}
    assert default_address() == "127.0.0.1:2525"


def _exchange(reply: bytes, **kw) -> Exchange:
    return Exchange("email", 1, b"frame", b"frame", reply=reply, **kw)


@pytest.mark.parametrize("error, says", [
    (LoginFailed("KO: wrong username or password"), "Login refused: wrong username or password"),
    (LoginFailed("KO"), "Login refused: wrong username or password"),
    (ServerUnreachable("nothing is listening at h:1 (is the server running?)"), "Cannot reach the server"),
    (RetriesExhausted("email", [_exchange(b"KO")] * 4), "lower the noise"),
    (RetriesExhausted("email", [_exchange(b"", error="TimeoutError: timed out")] * 4), "stopped answering"),
    (ServerError("ERROR: unknown recipient 'zed'"), "The server said: ERROR: unknown recipient 'zed'."),
    (ServerError("ERROR: no such session"), "Log in again."),
    (NotLoggedIn("log in"), "Log in first."),
    (LocalProtocolError("bad username '1x'"), "bad username"),
    (ConnectionResetError("reset by peer"), "Network error"),
    (KeyError("boom"), "Unexpected error (KeyError)"),
])
def test_describe_error(error, says):
    message = describe_error(error)
    assert says in message
    assert "Traceback" not in message


@pytest.mark.parametrize("given, expected", [("::1", ("::1", 2525)), ("host_1.local.:9", ("host_1.local.", 9))])
def test_parse_address_takes_bare_ipv6_and_local_names(given, expected):
    assert parse_address(given) == expected


def test_a_name_lookup_failure_is_one_sentence_not_a_retry_story():
    exc = RetriesExhausted("login", [_exchange(b"", error="gaierror: [Errno -2] Name or service not known")] * 4)
    message = describe_error(exc)
    assert "could not be looked up" in message and "stopped answering" not in message
    message = describe_error(socket.gaierror(-2, "Name or service not known"))
    assert message == "Cannot find the server: its name could not be looked up (Name or service not known)."


def _damaged(frame: bytes, byte: int, bit: int = 1) -> Exchange:
    wire = bytearray(frame)
    wire[byte] ^= 1 << bit
    return Exchange("count", 1, frame, bytes(wire), reply=b"KO", flips=((byte, bit),))


def test_a_flip_in_the_checksum_is_marked_as_such():
    from mailkit import protocol

    frame = protocol.make_frame("0123456789", "count")
    in_checksum = views.frames_html(Transcript([_damaged(frame, len(frame) - 5)]))
    plain = html.unescape(re.sub(r"<[^>]+>", "", in_checksum))
    assert "hit the checksum itself" in plain and "the content arrived intact" in plain
    lines = plain.splitlines()
    frame_line = next(i for i, line in enumerate(lines) if "0123456789:count#" in line)
    caret = lines[frame_line + 1].index("^")
    assert caret == len(views.INDENT) + len(frame) - 5               # right under the flipped character
    assert in_checksum.count('class="mailkit-flip"') == 1
    assert re.search(r"sha1 now " + protocol.checksum(frame.rpartition(b"#")[0]), plain)
    assert 'class="mailkit-attempt-failed"' in in_checksum and "✖ #1 count" in plain

    in_content = html.unescape(re.sub(r"<[^>]+>", "", views.frames_html(Transcript([_damaged(frame, 2)]))))
    assert "checksum itself" not in in_content and "a flipped bit" in in_content


def test_frames_hide_passwords_and_show_checksums(mail_server, apps):
    app = apps(mail_server, user="alice", password="wonderland", noise=1.0, retries=1)
    log_in(app, "wonderland")
    frames = html.unescape(re.sub(r"<[^>]+>", "", views.frames_html(app.transcript)))
    assert "wonderland" not in frames and "alice:••••••••" in frames
    assert re.search(r"dump#[0-9a-f!-~]{40}", frames)          # the frame and its checksum
    assert "content hashes to" in frames or "sha1 now" in frames or "no '#' left" in frames


def test_diagram_falls_back_to_text(monkeypatch):
    monkeypatch.setattr(views, "_sequence_diagram", lambda: None)
    transcript = Transcript([Exchange("count", 1, b"x", b"x", reply=b"OK: 0 messages")])
    assert "<pre" in views.diagram_html(transcript) and "count #1" in views.diagram_html(transcript)

    def broken():
        def draw(*_a, **_k):
            raise RuntimeError("pictures broke")
        return draw

    monkeypatch.setattr(views, "_sequence_diagram", broken)
    assert "count #1" in views.diagram_html(transcript)
    assert "no exchanges yet" in views.diagram_html(Transcript())


# -- the app ------------------------------------------------------------------------------

def test_a_new_app_shows_the_login_form(mail_server, apps, monkeypatch):
    monkeypatch.delenv(views.ENV_SERVER, raising=False)
    app = apps(mail_server, user="alice")
    assert app.ui.server.value == "%s:%d" % mail_server.address
    assert app.ui.login_box.layout.display != "none"
    assert app.ui.session_box.layout.display == "none"
    assert status(app)[0] == "info"
    assert app.ui.send.disabled and app.ui.refresh.disabled and not app.ui.login.disabled
    assert "mailkit-app" in app._dom_classes and "mailkit-idle" in app._dom_classes
    assert re.fullmatch(r"<MailClientApp alice @ 127\.0\.0\.1:\d+>", repr(app))
    assert app.ui.tabs.titles == ("Inbox", "Compose", "Transcript")


def test_alice_writes_bob_reads_and_deletes(mail_server, apps):
    alice, bob = apps(mail_server, user="alice"), apps(mail_server, user="bob")
    log_in(alice, "wonderland")
    assert status(alice) == ("ok", status(alice)[1]) and "Logged in as alice" in status(alice)[1]
    assert alice.ui.login_box.layout.display == "none" and alice.ui.password.value == ""
    assert "alice" in text(alice.ui.title) and text(alice.ui.count) == "0 messages"
    assert repr(alice).endswith(", logged in>")

    compose(alice, "bob", "Lunch?", "Noon at the cafe?\nBring the slides.")
    assert status(alice) == ("ok", "✔ Sent to bob: the server said 'OK: Email Sent'.")
    assert alice.ui.subject.value == alice.ui.body.value == ""        # ready for the next one
    compose(alice, "bob", "Slides", "Here they are")

    log_in(bob, "builder")
    assert text(bob.ui.count) == "2 messages"
    labels = [label for label, _ in bob.ui.inbox.options]
    assert labels == ["alice · Slides · Here they are", "alice · Lunch? · Noon at the cafe? Bring the slides."]
    assert bob.ui.delete.disabled                                     # nothing selected yet
    bob.ui.inbox.value = 1
    assert "Subject: Lunch?" in text(bob.ui.reader) and "Bring the slides." in text(bob.ui.reader)
    assert not bob.ui.delete.disabled

    bob.ui.delete.click()
    bob.wait()
    assert status(bob)[0] == "ok" and "Deleted 1 message from alice" in status(bob)[1]
    assert text(bob.ui.count) == "1 message"
    assert [label for label, _ in bob.ui.inbox.options] == ["alice · Slides · Here they are"]
    assert bob.ui.inbox.value is None and "Select a message" in text(bob.ui.reader)

    bob.ui.logoff.click()
    bob.wait()
    assert "Logged off bob" in status(bob)[1]
    assert bob.client is None and bob.ui.inbox.options == () and bob.ui.login_box.layout.display == ""
    assert "Log in to see your inbox" in text(bob.ui.inbox_note)


def test_sending_to_yourself_refreshes_your_inbox(mail_server, apps):
    carol = apps(mail_server, user="carol", background=False)
    log_in(carol, "lamb")
    compose(carol, "carol", "note to self", "buy milk")
    assert text(carol.ui.count) == "1 message"


@pytest.mark.parametrize("action, says", [
    ("wrong password", "Login refused: wrong username or password"),
    ("bad username", "bad username"),
    ("no username", "Type a user name"),
    ("bad address", "HOST:PORT"),
    ("unknown recipient", "The server said: ERROR: unknown recipient 'zed'."),
    ("no recipient", "Type a recipient"),
    ("server down", "Cannot reach the server"),
    ("address with two ports", "more than one ':'"),
    ("a web address", "no http://"),
])
def test_errors_are_sentences_in_the_app(mail_server, apps, capsys, action, says):
    app = apps(mail_server, user="alice")
    if action == "wrong password":
        log_in(app, "not-the-password")
    elif action == "bad username":
        log_in(app, "x", user="1alice")
    elif action == "no username":
        log_in(app, "x", user="  ")
    elif action in ("bad address", "address with two ports", "a web address"):
        app.ui.server.value = {"bad address": "localhost:mail", "address with two ports": "127.0.0.1:25:26",
                               "a web address": "http://127.0.0.1:2525/"}[action]
        log_in(app, "wonderland")
        assert len(app.transcript) == 0                     # nothing was sent
    else:
        log_in(app, "wonderland")
        if action == "server down":
            mail_server.stop()
            app.ui.refresh.click()
            app.wait()
        else:
            compose(app, "zed" if action == "unknown recipient" else "", "hi", "there")
    kind, message = status(app)
    assert kind == "error" and says in message, message
    assert "mailkit-idle" in app._dom_classes
    assert capsys.readouterr() == ("", "")                  # nothing printed into the cell


def test_an_unknown_host_is_one_line_and_never_retried(apps, monkeypatch):
    """A name that cannot be looked up: one red sentence, no attempt sent,
    no "stopped answering" advice.  The lookup failure is the real
    socket.gaierror, raised here without asking a DNS server (tests send
    nothing beyond the loopback)."""
    asked = []

    def getaddrinfo(host, *args, **kwargs):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(views.socket, "getaddrinfo", getaddrinfo)
    app = apps("nohost.invalid:2525", user="alice")
    log_in(app, "wonderland")
    kind, message = status(app)
    assert kind == "error", message
    assert message == ("✖ There is no server called 'nohost.invalid': the name could not be looked up "
                       "(Name or service not known). Check the spelling, or type an IP address such as 127.0.0.1.")
    assert asked == ["nohost.invalid"]                     # looked up once
    assert len(app.transcript) == 0 and app.client is None  # no attempt, let alone four
    assert "attempt" not in message and "stopped answering" not in message


def test_noise_brings_retries_into_the_transcript(mail_server, apps):
    bob = apps(mail_server, user="bob")
    log_in(bob, "builder")
    bob.ui.tabs.selected_index = 2
    bob.ui.noise.value = 0.6                  # seed 0: dump goes through, count needs 3 tries
    bob.ui.refresh.click()
    bob.wait()
    assert status(bob)[0] == "ok"
    frames = text(bob.ui.frames)
    assert "#1 count       57 B -> KO  flipped" in frames and "#3 count       57 B -> OK: 0 messages" in frames
    assert "KO" in text(bob.ui.diagram) and "<svg" in bob.ui.diagram.value
    assert bob.ui.tabs.titles[2] == f"Transcript ({len(bob.transcript)})"
    assert bob.client.channel.rate == 0.6 and bob.client.channel.seed == 0
    assert text(bob.ui.noise_note) == "noise 0.60, seed 0: about 60% of frames get a flipped bit"

    bob.ui.noise.value = 1.0                  # every frame damaged: the retries run out
    bob.ui.refresh.click()
    bob.wait()
    kind, message = status(bob)
    assert kind == "error" and "dump failed after 4 attempts (KO, KO, KO, KO)" in message
    assert "lower the noise" in message

    bob.ui.noise.value = 0.0
    assert bob.client.channel is None and "no noise" in text(bob.ui.noise_note)
    bob.ui.clear.click()
    bob.wait()
    assert "no exchanges yet" in text(bob.ui.frames)


def test_the_same_seed_gives_the_same_retries(mail_server, apps):
    runs = []
    for _ in range(2):
        app = apps(mail_server, user="bob", noise=0.5, seed=7, background=False)
        log_in(app, "builder")
        for _ in range(3):
            app.ui.refresh.click()
        runs.append([(e.command, e.attempt, e.outcome, e.flips) for e in app.transcript])
    assert runs[0] == runs[1]


def test_the_transcript_is_drawn_when_its_tab_is_opened(mail_server, apps):
    app = apps(mail_server, user="alice")
    log_in(app, "wonderland")
    assert app.ui.frames.value == ""                 # not drawn while nobody looks
    app.ui.tabs.selected_index = 2
    app.wait()
    assert "#1 login" in text(app.ui.frames) and "alice:••••••••" in text(app.ui.frames)


class SilentServer:
    """Accepts connections and never answers: a hung server."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_slow_server_makes_the_app_busy_not_the_kernel(apps):
    silent = SilentServer()
    try:
        app = apps(silent.address, user="alice", timeout=0.3, retries=1)
        started = time.perf_counter()
        app.ui.password.value = "wonderland"
        app.ui.login.click()
        assert time.perf_counter() - started < 0.2       # the click returned; the kernel is free
        assert app.busy and "mailkit-busy" in app._dom_classes
        assert status(app) == ("busy", "⏳ Logging in as alice…")
        assert app.ui.login.disabled and app.ui.send.disabled
        app.ui.login.click()                              # a second click while busy is ignored
        app.wait()
        kind, message = status(app)
        # a login that got no reply is not sent again (a slow server may still
        # take it): one attempt, waited for as long as the retries would take
        assert kind == "error" and "login failed after 1 attempt" in message
        assert "not sent again" in message and "stopped answering" in message
        assert not app.busy and "mailkit-idle" in app._dom_classes and not app.ui.login.disabled
        assert len(app.transcript) == 1
        frames = views.frames_html(app.transcript)           # one timeout: red, not green
        assert frames.count('class="mailkit-attempt-failed"') == 1
        assert "mailkit-attempt-retried" not in frames and "#1a7f37" not in frames
    finally:
        silent.close()


def test_logoff_when_the_server_is_gone_still_logs_off_here(mail_server, apps):
    app = apps(mail_server, user="alice")
    log_in(app, "wonderland")
    mail_server.stop()
    app.ui.logoff.click()
    app.wait()
    assert app.client is None and app.ui.login_box.layout.display == ""
    assert status(app)[0] == "error" and "Cannot reach the server" in status(app)[1]


def poll_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mailkit-app-poll"]


def test_live_inbox_polls_and_stops_cleanly(mail_server, apps):
    alice = apps(mail_server, user="alice", background=False)
    bob = apps(mail_server, user="bob", poll_interval=0.05)
    log_in(alice, "wonderland")
    bob.ui.live.value = True                           # before login: starts with the session
    assert not poll_threads()
    log_in(bob, "builder")
    assert len(poll_threads()) == 1
    compose(alice, "bob", "Live", "no refresh needed")
    wait_for(lambda: text(bob.ui.count) == "1 message", 5)
    assert text(bob.ui.count) == "1 message"
    assert status(bob) == ("ok", "✔ New mail: 1 message.")
    bob.ui.live.value = False
    assert not poll_threads()
    bob.ui.live.value = True
    assert len(poll_threads()) == 1
    bob.ui.logoff.click()
    bob.wait()
    assert not poll_threads()
    bob.ui.live.value = True
    log_in(bob, "builder")
    assert len(poll_threads()) == 1
    bob.close()
    assert not poll_threads()


def test_live_refresh_stops_in_a_forgotten_tab(mail_server, apps):
    """Without a click for live_for seconds the polling stops, so a closed
    tab's kernel goes quiet and Voila's culler can end it."""
    bob = apps(mail_server, user="bob", poll_interval=0.02, live_for=0.3)
    log_in(bob, "builder")
    bob.ui.live.value = True
    assert len(poll_threads()) == 1
    deadline = time.monotonic() + 10
    while bob.ui.live.value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bob.ui.live.value is False
    kind, message = status(bob)
    assert kind == "info" and message.startswith("ℹ Live refresh stopped after") and "tick live" in message
    deadline = time.monotonic() + 5
    while poll_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not poll_threads()
    polled = len(bob.transcript)
    bob.ui.live.value = True                           # a click: it starts again
    assert len(poll_threads()) == 1
    deadline = time.monotonic() + 5
    while len(bob.transcript) == polled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(bob.transcript) > polled


def test_close_stops_every_thread(mail_server):
    before = {t.name for t in threading.enumerate()}
    app = MailClientApp(mail_server, user="alice", poll_interval=0.05)
    app.ui.live.value = True
    log_in(app, "wonderland")
    app.close()
    wait_for(lambda: not {t.name for t in threading.enumerate()} - before, 2)
    assert not {t.name for t in threading.enumerate()} - before
    assert app.comm is None and app.ui.login.comm is None


def test_two_apps_side_by_side_print_deterministically(mail_server, apps, monkeypatch):
    """The notebook's apps cell: what JupyterLab shows before the notebook
    runs, and what nbval compares (ports masked), is a tidy text form."""
    from mailkit.widgets import SideBySide, side_by_side

    monkeypatch.delenv(views.ENV_SERVER, raising=False)
    alice, bob = apps(mail_server, user="alice"), apps(mail_server, user="bob")
    box = side_by_side(alice, bob)
    assert isinstance(box, SideBySide) and box.children == (alice, bob)
    plain = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", box._repr_mimebundle_()["text/plain"])
    assert plain == ("2 mail clients side by side (they appear when the cell runs):\n"
                     "  alice @ 127.0.0.1:PORT, not logged in\n"
                     "  bob @ 127.0.0.1:PORT, not logged in")
    assert "HBox(" not in plain and "<MailClientApp" not in plain
    log_in(alice, "wonderland")
    assert re.sub(r"\d{4,5}", "PORT", alice.text) == "alice @ 127.0.0.1:PORT, logged in"
    assert alice._repr_mimebundle_()["text/plain"].startswith("Mail client (it appears when the cell runs):")


def test_about_this_page_in_the_notebook_and_in_voila(monkeypatch):
    from mailkit.widgets import about_this_page, page_url

    monkeypatch.delenv(views.ENV_VOILA_URL, raising=False)
    monkeypatch.delenv(views.ENV_SERVER, raising=False)
    assert page_url() is None
    assert "make app" in repr(about_this_page()) and "APP_PORT" in repr(about_this_page())

    monkeypatch.setenv(views.ENV_VOILA_URL, "http://127.0.0.1:9123/?voila-template=lab")
    assert page_url() == "http://127.0.0.1:9123/"
    note = about_this_page()
    assert note._repr_markdown_().startswith("This page: [http://127.0.0.1:9123/](http://127.0.0.1:9123/).")
    assert "practice mail server of its own" in repr(note) and "make app" not in repr(note)
    monkeypatch.setenv(views.ENV_SERVER, "teacher.local:2525")
    assert "class server teacher.local:2525" in repr(about_this_page())


def test_the_widgets_have_stable_css_classes(mail_server, apps):
    """tests/test_browser*.py select by these; renaming one breaks it."""
    app = apps(mail_server)
    classes = {c for w in app._descendants() for c in w._dom_classes}
    assert {
        "mailkit-login-user", "mailkit-login-password", "mailkit-login-server", "mailkit-login-button",
        "mailkit-status", "mailkit-count", "mailkit-refresh", "mailkit-logoff", "mailkit-live",
        "mailkit-inbox", "mailkit-message", "mailkit-delete", "mailkit-compose-to",
        "mailkit-compose-subject", "mailkit-compose-body", "mailkit-send", "mailkit-noise",
        "mailkit-seed", "mailkit-clear", "mailkit-diagram", "mailkit-frames", "mailkit-tabs", "mailkit-noise-note",
    } <= classes


def test_the_app_works_with_a_class_server_on_another_port(tmp_path, apps):
    """`python -m mailkit serve --host 0.0.0.0`: a server in another process,
    reached by the machine's name rather than the loopback address."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "mailkit", "serve", "--host", "0.0.0.0", "--port", "0", "--quiet",
         "--db", str(tmp_path / "class.db"), "--user", "alice:wonderland", "--user", "bob:builder"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mailkit listening on 0.0.0.0:"), line + proc.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        hostname = socket.gethostname()
        alice = apps(f"{hostname}:{port}", user="alice")
        bob = apps(("0.0.0.0", port), user="bob")                  # as the server reports itself
        assert alice.ui.server.value == f"{hostname}:{port}"
        assert bob.ui.server.value == f"127.0.0.1:{port}"
        log_in(alice, "wonderland")
        assert status(alice)[0] == "ok", status(alice)
        compose(alice, "bob", "class", "from another process")
        log_in(bob, "builder")
        assert status(bob)[0] == "ok" and text(bob.ui.count) == "1 message"
        proc.terminate()                                           # the class server goes away
        proc.wait(10)
        bob.ui.refresh.click()
        bob.wait()
        assert status(bob)[0] == "error" and "Cannot reach the server" in status(bob)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
