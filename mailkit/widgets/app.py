"""The mail-client app: one user's login form, inbox, compose form and
transcript, as one ipywidget.

Theory of operation
-------------------
Clicks arrive in the kernel's main thread.  A handler reads the form there,
then hands the network part (a *job*) to a worker thread, one job at a time,
and returns: the kernel stays free while a dead server times out or a noisy
wire forces retries.  While a job runs, the app is *busy*: its buttons are
disabled, the status line says what it is doing, and the app's element has
the CSS class ``mailkit-busy`` (``mailkit-idle`` otherwise).  A job ends by
writing its outcome into the status line, green or red: every error becomes a
sentence (:func:`~mailkit.widgets.views.describe_error`), never a traceback.

All exchanges of the app's successive clients go into one
:class:`~mailkit.trace.Transcript` (``app.transcript``), drawn in the
Transcript tab.  The noise slider and seed put a
:class:`~mailkit.noise.BitFlipChannel` under the client.  Every widget has a
stable CSS class (``mailkit-login-user``, ``mailkit-send``, ...) so browser
tests and instructors' style sheets can find it; the widgets themselves are
attributes of ``app.ui``.
"""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import ipywidgets as W

from ..client import DEFAULT_RETRIES, MailClient, MailClientError, NotLoggedIn
from ..noise import BitFlipChannel
from ..protocol import Message, ProtocolError
from ..text import plural
from ..trace import Transcript
from .background import Poller, Worker
from .views import (
    default_address, describe_error, diagram_html, frames_html, inbox_label, message_html,
    parse_address, resolve, status_html,
)

__all__ = ["MailClientApp", "SideBySide", "side_by_side", "APP_TIMEOUT_S", "POLL_INTERVAL_S"]

log = logging.getLogger("mailkit.widgets")

APP_TIMEOUT_S = 3.0      # a server silent for 3 s is down; with 3 retries a click waits 12 s at worst
POLL_INTERVAL_S = 5.0    # "live" inbox: a count request every 5 s is light for a class server
LIVE_FOR_S = 15 * 60.0   # ...until 15 min pass without a click: a forgotten tab stops polling, and
                         # its kernel goes idle, so that Voila's culler can end it (voila.json)
WAIT_TIMEOUT_S = 30.0    # app.wait(): longer than the slowest job (4 attempts x 3 s x 2 requests)
TRANSCRIPT_TAB = 2


def _tagged(widget, css_class: str):
    widget.add_class(css_class)
    return widget


class MailClientApp(W.VBox):
    """A mail client for one user, inside the notebook.

    ``MailClientApp()`` is the whole program: log in with the form, read,
    delete and write mail, and watch every frame in the Transcript tab.

    *server* (optional) is where the form's address starts: a running
    :class:`~mailkit.MailServer`, a ``(host, port)`` pair or ``"host:port"``;
    by default ``$MAILKIT_SERVER``, else the notebook's running MailServer,
    else ``127.0.0.1:2525``.  *user*, *password*, *noise* and *seed* fill the
    form.  *timeout* and *retries* go to the :class:`~mailkit.MailClient`.
    With ``background=False`` every click finishes before it returns (for
    scripts and tests); otherwise call :meth:`wait` to be sure.
    """

    def __init__(self, server=None, *, user: str = "", password: str = "", noise: float = 0.0,
                 seed: int = 0, timeout: float = APP_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 background: bool = True, poll_interval: float = POLL_INTERVAL_S,
                 live_for: float = LIVE_FOR_S, tls: bool = False, cafile: str | None = None, **kwargs):
        self.timeout, self.retries = timeout, retries
        # TLS (notebook 10; not in the 2017 protocol): the "TLS" box starts
        # as *tls*; *cafile* is the CA (or self-signed certificate) trusted
        # beside the system's, e.g. mailkit.tls.TEACHING_CERT on loopback.
        self.cafile = cafile
        self._tls_start = tls
        self.client: MailClient | None = None
        self.transcript = Transcript()
        self.messages: list[Message] = []      # newest first, as listed
        self._count: int | None = None
        self._channel: BitFlipChannel | None = None
        self._busy = False
        self._lock = threading.Lock()
        self._transcript_dirty = True
        self._worker = Worker(background)
        self._poller = Poller(poll_interval, self._poll)
        self.live_for = live_for
        self._last_action = time.monotonic()
        self.ui = SimpleNamespace()
        children = self._build(user, password, default_address(server), noise, seed, poll_interval)
        kwargs.setdefault("layout", W.Layout(border="1px solid #bbb", padding="6px", margin="2px",
                                             flex="1 1 0", min_width="360px"))
        super().__init__(children, **kwargs)
        self.add_class("mailkit-app")
        self.add_class("mailkit-idle")
        self._set_noise()
        self._show_session()
        self._say("info", "Log in to read and send mail.")

    def __repr__(self) -> str:
        # Short: Jupyter cuts a widget's text form at 110 characters, and the
        # notebook shows two of these in one HBox.
        who = self.ui.user.value or "?"
        state = ", logged in" if self.client else ""
        return f"<MailClientApp {who} @ {self.ui.server.value}{state}>"

    @property
    def text(self) -> str:
        """The app in one line of plain text: who, where, logged in or not."""
        client = self.client
        if client is not None:
            return f"{client.user} @ {client.host}:{client.port}, logged in"
        return f"{self.ui.user.value or '(no user yet)'} @ {self.ui.server.value}, not logged in"

    def _repr_mimebundle_(self, **kwargs):
        # What a notebook shows before its cells run (and what nbval compares):
        # a short text form instead of the widget's constructor call.
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = f"Mail client (it appears when the cell runs):\n  {self.text}"
        return data

    # -- building -------------------------------------------------------------

    def _build(self, user, password, address, noise, seed, poll_interval) -> list:
        ui = self.ui
        form = dict(layout=W.Layout(width="auto", max_width="420px"), style={"description_width": "64px"})
        ui.title = _tagged(W.HTML(), "mailkit-title")
        ui.status = _tagged(W.HTML(layout=W.Layout(min_height="24px")), "mailkit-status")

        ui.user = _tagged(W.Text(user, description="user", placeholder="alice", **form), "mailkit-login-user")
        ui.password = _tagged(W.Password(password, description="password", **form), "mailkit-login-password")
        ui.server = _tagged(W.Text(address, description="server", placeholder="host:port", **form),
                            "mailkit-login-server")
        ui.login = _tagged(W.Button(description="Log in", icon="sign-in", button_style="primary"),
                           "mailkit-login-button")
        ui.tls = _tagged(W.Checkbox(self._tls_start, description="TLS", indent=False,
                                    tooltip="encrypt with TLS and check the server's certificate",
                                    layout=W.Layout(width="auto")), "mailkit-login-tls")
        ui.login_box = _tagged(W.VBox([ui.user, ui.password, ui.server, ui.tls, ui.login]), "mailkit-login")

        ui.who = _tagged(W.HTML(), "mailkit-who")
        ui.count = _tagged(W.HTML(), "mailkit-count")
        ui.refresh = _tagged(W.Button(description="Refresh", icon="refresh",
                                      layout=W.Layout(width="auto")), "mailkit-refresh")
        ui.live = _tagged(W.Checkbox(False, description="live", indent=False,
                                     tooltip=f"refresh the inbox every {poll_interval:g} s",
                                     layout=W.Layout(width="auto")), "mailkit-live")
        ui.logoff = _tagged(W.Button(description="Log off", icon="sign-out",
                                     layout=W.Layout(width="auto")), "mailkit-logoff")
        ui.session_box = _tagged(W.HBox([ui.who, ui.count, ui.refresh, ui.live, ui.logoff],
                                        layout=W.Layout(align_items="center", flex_flow="row wrap")),
                                 "mailkit-session")

        ui.inbox = _tagged(W.Select(options=[], rows=6, layout=W.Layout(width="auto")), "mailkit-inbox")
        ui.reader = _tagged(W.HTML(message_html(None)), "mailkit-message")
        ui.delete = _tagged(W.Button(description="Delete", icon="trash", layout=W.Layout(width="auto")),
                            "mailkit-delete")
        ui.inbox_box = W.VBox([ui.inbox, ui.reader, ui.delete])
        ui.inbox_note = _tagged(W.HTML(), "mailkit-inbox-note")

        ui.to = _tagged(W.Text(description="to", placeholder="bob", **form), "mailkit-compose-to")
        ui.subject = _tagged(W.Text(description="subject", **form), "mailkit-compose-subject")
        ui.body = _tagged(W.Textarea(description="body", rows=5, **form), "mailkit-compose-body")
        ui.send = _tagged(W.Button(description="Send", icon="paper-plane", button_style="primary"),
                          "mailkit-send")

        ui.noise = _tagged(W.FloatSlider(noise, min=0.0, max=1.0, step=0.05, description="noise",
                                         readout_format=".2f", style={"description_width": "40px"},
                                         tooltip="the chance that a frame gets a flipped bit"),
                           "mailkit-noise")
        ui.seed = _tagged(W.IntText(seed, description="seed", style={"description_width": "32px"},
                                    layout=W.Layout(width="120px")), "mailkit-seed")
        ui.clear = _tagged(W.Button(description="Clear", icon="eraser", layout=W.Layout(width="auto")),
                           "mailkit-clear")
        # Written by the kernel when it has taken the noise in: what the next requests will meet.
        ui.noise_note = _tagged(W.HTML(), "mailkit-noise-note")
        # Scroll, never clip: two apps side by side leave each about half a page,
        # narrower than a sequence diagram or a long frame.
        ui.diagram = _tagged(W.HTML(layout=W.Layout(overflow="auto", max_width="100%")), "mailkit-diagram")
        ui.frames = _tagged(W.HTML(layout=W.Layout(overflow="auto", max_width="100%")), "mailkit-frames")

        ui.tabs = _tagged(W.Tab([
            W.VBox([ui.inbox_note, ui.inbox_box]),
            W.VBox([ui.to, ui.subject, ui.body, ui.send]),
            W.VBox([W.HBox([ui.noise, ui.seed, ui.clear], layout=W.Layout(flex_flow="row wrap")), ui.noise_note,
                    W.HTML("<b>Sequence diagram</b> (the last exchanges)"), ui.diagram,
                    W.HTML("<b>Frames</b> (attempt, command, size, reply; then the frame as sent)"),
                    ui.frames]),
        ], titles=("Inbox", "Compose", "Transcript")), "mailkit-tabs")

        ui.login.on_click(self._on_login)
        ui.logoff.on_click(self._on_logoff)
        ui.refresh.on_click(self._on_refresh)
        ui.delete.on_click(self._on_delete)
        ui.send.on_click(self._on_send)
        ui.clear.on_click(self._on_clear)
        ui.inbox.observe(self._on_select, "value")
        ui.noise.observe(self._set_noise, "value")
        ui.seed.observe(self._set_noise, "value")
        ui.live.observe(self._on_live, "value")
        ui.tabs.observe(self._on_tab, "selected_index")
        return [ui.title, ui.login_box, ui.session_box, ui.status, ui.tabs]

    # -- running jobs -------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._busy

    def _run(self, doing: str, job, *, quiet: bool = False) -> None:
        """Run *job* (which returns a success message or None) in the worker.
        Unless *quiet* (the live poll), the app is busy until it ends."""
        if not quiet:
            self._last_action = time.monotonic()
            with self._lock:
                if self._busy:
                    return
                self._busy = True
            self._set_busy(True)
            self._say("busy", f"{doing}…")

        def task():
            kind, text = "ok", None
            try:
                text = job()
            except Exception as exc:           # every error ends in the status line
                if not isinstance(exc, (MailClientError, ProtocolError, ValueError)):
                    log.exception("%s failed", doing)
                kind, text = "error", describe_error(exc)
            finally:
                if not quiet:
                    self._busy = False
                    self._set_busy(False)
                self._transcript_changed()
            if text:
                self._say(kind, text)
            elif not quiet:
                self._say("info", "Done.")

        self._worker.submit(task)

    def wait(self, timeout: float = WAIT_TIMEOUT_S) -> "MailClientApp":
        """Block until every job started so far has finished (for scripts and tests)."""
        self._worker.wait(timeout)
        return self

    def close(self) -> None:
        """Stop the live poll and the worker, and close every widget of the app."""
        self._poller.stop()
        self._worker.shutdown()
        for widget in self._descendants():
            widget.close()
        super().close()

    def _descendants(self):
        stack = list(self.children)
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            yield widget

    # -- what the user does ---------------------------------------------------------

    def _on_login(self, _button=None) -> None:
        user, password, address = self.ui.user.value.strip(), self.ui.password.value, self.ui.server.value
        tls = self.ui.tls.value

        def job():
            if not user:
                raise ValueError("Type a user name first.")
            host, port = parse_address(address)
            resolve(host, port)                       # an unknown name: one line, no retries
            client = MailClient(host, port, timeout=self.timeout, retries=self.retries, channel=self._channel,
                                tls=tls, cafile=self.cafile if tls else None)
            client.transcript = self.transcript       # one transcript across logins
            session = client.login(user, password)
            self.client = client
            self.ui.password.value = ""
            self._show_session()
            if self.ui.live.value:
                self._poller.start()
            n = self._load_inbox()
            return f"Logged in as {user} (session {session}): {plural(n, 'message')}."

        self._run(f"Logging in as {user or '?'}", job)

    def _on_logoff(self, _button=None) -> None:
        client = self.client

        def job():
            self._poller.stop()
            try:
                if client is not None:
                    client.logoff()
            finally:                                  # logged off here, whatever the server says
                self.client = None
                self._show_messages([], None)
                self._show_session()
            return f"Logged off {client.user if client else ''}."

        self._run("Logging off", job)

    def _on_refresh(self, _button=None) -> None:
        def job():
            n = self._load_inbox()
            return f"Inbox refreshed: {plural(n, 'message')}."

        self._run("Refreshing the inbox", job)

    def _on_delete(self, _button=None) -> None:
        index = self.ui.inbox.value
        if index is None or self.client is None:
            self._say("error", "Select a message to delete first.")
            return
        m = self.messages[index]

        def job():
            n = self._session().delete(m.sender, m.subject)
            self._load_inbox()
            return f"Deleted {plural(n, 'message')} from {m.sender} with subject {m.subject!r}."

        self._run(f"Deleting {m.subject!r}", job)

    def _on_send(self, _button=None) -> None:
        to, subject, body = self.ui.to.value.strip(), self.ui.subject.value, self.ui.body.value

        def job():
            client = self._session()
            if not to:
                raise ValueError("Who is it for? Type a recipient in 'to'.")
            reply = client.send(to, subject, body)
            self.ui.subject.value = self.ui.body.value = ""
            if to == client.user:
                self._load_inbox()
            return f"Sent to {to}: the server said {reply.strip()!r}."

        self._run(f"Sending to {to or '?'}", job)

    def _on_clear(self, _button=None) -> None:
        self.transcript.clear()
        self._transcript_dirty = True
        self._worker.submit(self._render_transcript)

    def _on_select(self, _change=None) -> None:
        index = self.ui.inbox.value
        self.ui.reader.value = message_html(self.messages[index] if index is not None else None)
        self._set_busy(self._busy)

    def _set_noise(self, _change=None) -> None:
        rate, seed = float(self.ui.noise.value), int(self.ui.seed.value)
        self._channel = BitFlipChannel(rate, seed=seed) if rate > 0 else None
        client = self.client
        if client is not None:
            client.channel = self._channel
        self.ui.noise_note.value = (
            "<i>no noise: every frame arrives as sent</i>" if rate == 0 else
            f"<i>noise {rate:.2f}, seed {seed}: about {rate:.0%} of frames get a flipped bit</i>")

    def _on_live(self, change) -> None:
        self._last_action = time.monotonic()
        if change["new"] and self.client is not None:
            self._poller.start()
        else:
            self._poller.stop()

    def _poll(self) -> None:
        """Every few seconds while "live": count, and reload if it changed."""
        client = self.client
        if client is None or self._busy:
            return
        if time.monotonic() - self._last_action > self.live_for:
            self.ui.live.value = False                # stops this poller (see _on_live)
            self._say("info", f"Live refresh stopped after {self.live_for / 60:g} min without a click: "
                              "tick live to start it again.")
            return

        def job():
            if self.client is not client:             # logged off meanwhile
                return None
            if client.count() == self._count:
                return None
            n = self._load_inbox()
            return f"New mail: {plural(n, 'message')}."

        self._run("Polling", job, quiet=True)

    def _on_tab(self, change) -> None:
        if change["new"] == TRANSCRIPT_TAB and self._transcript_dirty:
            self._worker.submit(self._render_transcript)

    # -- showing state (called from the worker) -----------------------------------------

    def _session(self) -> MailClient:
        """The client of the current session (a job may run after a log-off)."""
        if self.client is None:
            raise NotLoggedIn("not logged in")
        return self.client

    def _load_inbox(self) -> int:
        client = self._session()
        messages = client.dump()
        count = client.count()
        self._show_messages(messages[::-1], count)
        return count

    def _show_messages(self, messages: list[Message], count: int | None) -> None:
        ui = self.ui
        old = ui.inbox.value
        keep = self.messages[old] if old is not None and old < len(self.messages) else None
        self.messages, self._count = messages, count
        ui.inbox.options = [(inbox_label(m), i) for i, m in enumerate(messages)]
        ui.inbox.value = messages.index(keep) if keep in messages else None
        ui.count.value = "" if count is None else f"<b>{plural(count, 'message')}</b>"
        ui.inbox_box.layout.display = "" if messages else "none"
        if self.client is None:
            ui.inbox_note.value = "<i>Log in to see your inbox.</i>"
        else:
            ui.inbox_note.value = "" if messages else "<i>Your inbox is empty.</i>"
        self._on_select()

    def _show_session(self) -> None:
        ui, client = self.ui, self.client
        logged_in = client is not None
        ui.login_box.layout.display = "none" if logged_in else ""
        ui.session_box.layout.display = "" if logged_in else "none"
        where = ui.server.value if not logged_in else f"{client.host}:{client.port}"
        ui.title.value = (f"<b>✉ mailkit</b> · <b>{client.user}</b> @ {where}" if logged_in
                          else "<b>✉ mailkit</b> · not logged in")
        ui.who.value = f"<b>{client.user}</b>&nbsp;·&nbsp;" if logged_in else ""
        if not logged_in:
            self._show_messages([], None)
        self._set_busy(self._busy)

    def _set_busy(self, busy: bool) -> None:
        ui, logged_in = self.ui, self.client is not None
        ui.login.disabled = busy or logged_in
        for button in (ui.refresh, ui.logoff, ui.send):
            button.disabled = busy or not logged_in
        ui.delete.disabled = busy or not logged_in or ui.inbox.value is None
        self.remove_class("mailkit-idle" if busy else "mailkit-busy")
        self.add_class("mailkit-busy" if busy else "mailkit-idle")

    def _say(self, kind: str, text: str) -> None:
        status = self.ui.status
        for other in ("info", "busy", "ok", "error"):
            if other != kind:
                status.remove_class(f"mailkit-status-{other}")
        status.value = status_html(kind, text)
        status.add_class(f"mailkit-status-{kind}")

    def _transcript_changed(self) -> None:
        self._transcript_dirty = True
        self.ui.tabs.set_title(TRANSCRIPT_TAB, f"Transcript ({len(self.transcript)})")
        if self.ui.tabs.selected_index == TRANSCRIPT_TAB:
            self._render_transcript()

    def _render_transcript(self) -> None:
        try:
            self._transcript_dirty = False
            snapshot = Transcript(list(self.transcript))
            self.ui.diagram.value = diagram_html(snapshot)
            self.ui.frames.value = frames_html(snapshot)
            self.ui.tabs.set_title(TRANSCRIPT_TAB, f"Transcript ({len(snapshot)})")
        except Exception:                # a drawing problem must not kill the worker
            log.exception("drawing the transcript failed")


class SideBySide(W.HBox):
    """Mail-client apps in a row, whose text form (what a notebook shows
    before it runs) lists them one per line."""

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        apps = [app for app in self.children if isinstance(app, MailClientApp)]
        lines = [f"  {app.text}" for app in apps]
        data["text/plain"] = "\n".join([f"{len(apps)} mail clients side by side (they appear when the cell runs):",
                                        *lines])
        return data


def side_by_side(*apps: MailClientApp) -> SideBySide:
    """Show *apps* next to each other (they wrap onto new rows on a narrow page)."""
    return SideBySide(list(apps), layout=W.Layout(flex_flow="row wrap"))
