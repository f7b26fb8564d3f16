"""The course's small forms (ipywidgets): log in, build a frame, send through noise.

Each form is a widget box with its parts as attributes (``form.user``,
``form.button``, ``form.output``...), so a notebook cell or a test can fill
it in and press the button from code::

    form = login_form(users={"alice": "wonderland"})   # a server of its own
    form.user.value, form.password.value = "alice", "wonderland"
    form.click()            # what the button does; returns the result

A later notebook cell should not change a form shown earlier (after Run All
the form would show that cell's result, not the student's).  So cells call
``form.run_with(user=..., password=...)``: it does what the button does
with those values and returns the result for the cell to show, leaving the
form's fields and output as they were.

A form owns what it needs.  ``login_form(users=...)`` and
``noise_form(..., users=...)`` start a small server of their own when first
used (and again after ``stop_everything()`` or ``form.stop()``), so they
keep working after Run All.  A form given someone else's server that has
since been stopped says so in one line instead of failing.

Stable CSS classes for browser tests: the containers are
``mailkit-login-form``, ``mailkit-frame-builder``, ``mailkit-noise-form``,
``mailkit-pipeline-form`` and ``mailkit-congestion-form``;
each output area is ``mailkit-form-result``.

How a form writes its result matters for notebooks that are checked by
nbval.  A form never ``print``\\ s inside ``with output:``: run from a cell,
that output would go to the cell, not to the widget (nbval would see it,
nbclient would not).  Instead it sets ``output.outputs`` to one display
item, which works the same whether a student clicks in the browser or a
cell calls :meth:`click`.  And each form's text form (what nbval compares,
and what a viewer without widgets shows) lists its fields and its last
result in words.
"""

from __future__ import annotations

import html

import ipywidgets as W

from . import protocol as P
from .client import MailClient, MailClientError, RetriesExhausted
from . import congestion, pipelining
from .noise import BitFlipChannel
from .pictures import COLOURS, frame_html, sequence_diagram
from .server import MailServer
from .text import clip, plural

__all__ = ["LoginForm", "login_form", "FrameBuilder", "frame_builder", "NoiseForm", "noise_form",
           "ServerStopped", "PipelineForm", "pipeline_form",
           "CongestionForm", "congestion_form"]


class ServerStopped(RuntimeError):
    """The server a form was given has been stopped (by a later cell)."""


def _address(target) -> tuple[str, int]:
    """A server (anything with ``.address``) or a ``(host, port)`` pair."""
    if getattr(target, "running", True) is False:
        raise ServerStopped("the server behind this form was stopped by a later cell "
                            "(server.stop()): run the cells from the top again, or use a form "
                            "with a server of its own, e.g. login_form(users={...})")
    return tuple(target.address) if hasattr(target, "address") else tuple(target)


class _OwnServer:
    """A form's own small server, started when first needed (and again if
    something stopped it: ``stop_everything()`` at the top of a notebook)."""

    def __init__(self, users: dict[str, str]):
        self.users = dict(users)
        self.server: MailServer | None = None

    def address(self) -> tuple[str, int]:
        if self.server is None or not self.server.running:
            if self.server is not None:
                self.server.close()
            self.server = MailServer(users=self.users).start()
        return self.server.address

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def _bundle(obj) -> dict:
    """The display item of *obj*: its text, plus SVG/HTML if it has them."""
    data = {"text/plain": repr(obj)}
    for mime, method in (("image/svg+xml", "_repr_svg_"), ("text/html", "_repr_html_")):
        if hasattr(obj, method):
            data[mime] = getattr(obj, method)()
    return {"output_type": "display_data", "data": data, "metadata": {}}


class _Form(W.VBox):
    """A form: fields, a button, an output area, and a text form of all three."""

    title = "form"
    css_class = "mailkit-form"

    def __init__(self, fields: list, button_label: str | None, **kwargs):
        self.output = W.Output(layout=W.Layout(border="1px solid #d1d5db", padding="4px",
                                               min_height="2em", overflow="auto"))
        self.output.add_class("mailkit-form-result")
        self.result = None
        self.button = None
        children = [W.HTML(f"<b>{html.escape(self.title)}</b>"), *fields]
        if button_label:
            self.button = W.Button(description=button_label, button_style="primary")
            self.button.on_click(lambda _button: self.click())
            children.append(self.button)
        children.append(self.output)
        super().__init__(children, **kwargs)
        self.add_class(self.css_class)
        self._own: _OwnServer | None = None

    def _target_address(self) -> tuple[str, int]:
        return self._own.address() if self._own is not None else _address(self.target)

    def stop(self) -> None:
        """Stop the form's own server, if it has one (it starts again when used)."""
        if self._own is not None:
            self._own.stop()

    @property
    def server(self):
        """The form's own server (``None`` until first used), or the one it was given."""
        return self._own.server if self._own is not None else getattr(self, "target", None)

    def run_with(self, **values):
        """Do what the button does with *values* in place of the fields'
        values; return the result WITHOUT showing it in the form or changing
        its fields (for notebook cells: the form shows only what a student does)."""
        import contextlib

        saved = {name: getattr(self, name).value for name in values}
        observing = getattr(self, "_observing", None)
        self._observing = False
        with contextlib.ExitStack() as stack:
            for name in values:          # the browser sees one message: the old value
                stack.enter_context(getattr(self, name).hold_sync())
            try:
                for name, value in values.items():
                    widget = getattr(self, name)
                    if isinstance(widget, W.Text) and not isinstance(value, str):
                        value = str(value)          # run_with(seed=4): the seed field is text
                    widget.value = value
                return self._run_safely()
            finally:
                for name, value in saved.items():
                    getattr(self, name).value = value
                self._observing = observing

    def click(self):
        """Do what the button does; show the result in the output area and return it."""
        result = self._run_safely()
        self.show(result)
        return result

    def _run_safely(self):
        try:
            return self.run()
        except ServerStopped as exc:
            return _Message(str(exc), "ERROR")
        except Exception as exc:        # a form must tell the student, not die silently
            return _Message(f"{type(exc).__name__}: {exc}", "ERROR")

    def run(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def show(self, result) -> None:
        self.result = result
        self.output.outputs = (_bundle(result),)

    # -- the text form ------------------------------------------------------
    def describe_fields(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def text(self) -> str:
        lines = [f"{self.title}:"] + [f"  {line}" for line in self.describe_fields()]
        if self.button is not None:
            lines.append(f"  [{self.button.description}]")
        if self.result is None:
            lines.append("  (nothing yet)")
        else:
            lines += ["  " + line for line in repr(self.result).split("\n")]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = self.text
        return data


class _Message:
    """A few lines of text, coloured by outcome in HTML."""

    def __init__(self, text: str, kind: str = "ink"):
        self.text, self.kind = text, kind

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        colour = COLOURS.get(self.kind, COLOURS["ink"])
        return f'<pre style="color:{colour};margin:0">{html.escape(self.text)}</pre>'


# --------------------------------------------------------------------------
# Login


class LoginResult(_Message):
    """What a login sent and received, byte for byte."""

    def __init__(self, sent: bytes, received: bytes, verdict: str, kind: str):
        self.sent, self.received, self.verdict = sent, received, verdict
        lines = [f"client -> server  {len(sent):>3} bytes: {sent!r}"] if sent else []
        if sent:
            lines.append(f"server -> client  {len(received):>3} bytes: {received!r}")
        super().__init__("\n".join(lines + [verdict]), kind)


class LoginForm(_Form):
    """User, password, a *Log in* button; the output shows the bytes that
    went each way.  ``.client`` is the logged-in :class:`MailClient`."""

    title = "Log in"
    css_class = "mailkit-login-form"

    def __init__(self, target=None, user: str = "", password: str = "", *, users=None):
        if (target is None) == (users is None):
            raise TypeError("give a server (or (host, port)) or users={...} for a server of its own")
        self.target = target
        self.client: MailClient | None = None
        self.user = W.Text(value=user, description="user")
        self.password = W.Password(value=password, description="password")
        super().__init__([self.user, self.password], "Log in")
        if users is not None:
            self._own = _OwnServer(users)

    def fill(self, user: str, password: str) -> "LoginForm":
        self.user.value, self.password.value = user, password
        return self

    def run(self) -> LoginResult:
        client = MailClient(*self._target_address(), retries=0)
        try:
            session_id = client.login(self.user.value, self.password.value)
        except P.LocalProtocolError as exc:
            return LoginResult(b"", b"", f"nothing sent: {exc}", "ERROR")
        except MailClientError as exc:
            e = client.transcript[-1] if client.transcript else None
            sent, got = (e.request, e.reply) if e else (b"", b"")
            return LoginResult(sent, got, f"login refused: {exc}", "ERROR")
        self.client = client
        e = client.transcript[-1]
        return LoginResult(e.request, e.reply, f"logged in: session id {session_id}", "OK")

    def describe_fields(self) -> list[str]:
        return [f"user     {self.user.value!r}", f"password {'•' * len(self.password.value)}"]


def login_form(target=None, user: str = "", password: str = "", *, users=None) -> LoginForm:
    """A login form for the server *target* (a server, or ``(host, port)``),
    or, with ``users={name: password}``, for a small server of its own that
    starts when the form is first used."""
    return LoginForm(target, user, password, users=users)


# --------------------------------------------------------------------------
# Frame builder


class FrameBuilder(_Form):
    """Recipient, subject and body; the frame and its checksum update as
    you type (no button).  ``.frame`` is the frame as bytes."""

    title = "Frame builder (email)"
    css_class = "mailkit-frame-builder"

    def __init__(self, session_id: str = "0123456789", recipient: str = "bob",
                 subject: str = "Hello", body: str = "How are you?"):
        self.session_id = W.Text(value=session_id, description="session id")
        self.recipient = W.Text(value=recipient, description="recipient")
        self.subject = W.Text(value=subject, description="subject")
        self.body = W.Textarea(value=body, description="body")
        fields = [self.session_id, self.recipient, self.subject, self.body]
        super().__init__(fields, None)
        self._observing = True
        for f in fields:
            f.observe(self._changed, names="value")
        self.click()

    def _changed(self, change) -> None:
        if self._observing:
            self.click()

    @property
    def frame(self) -> bytes:
        return P.make_frame(self.session_id.value, "email", self.recipient.value,
                            self.subject.value, self.body.value)

    def run(self) -> "BuiltFrame":
        return BuiltFrame(self.frame, self.recipient.value)

    def describe_fields(self) -> list[str]:
        return [f"{w.description:<10} {w.value!r}" for w in
                (self.session_id, self.recipient, self.subject, self.body)]


class BuiltFrame:
    """A frame, its parts, its checksum, and what a 2017 parser makes of it."""

    def __init__(self, frame: bytes, recipient: str | None = None):
        self.frame = frame
        self.view = frame_html(frame)
        _, claimed, ok = P.parse_2017(frame)
        self.ok_2017 = ok
        self.note_2017 = ("a 2017 parser (first '#') reads it correctly" if ok else
                          f"a 2017 parser (first '#') takes '{clip(claimed, 20)}' for the checksum "
                          "and answers KO")
        self.warnings = _recipient_warnings(recipient)

    def __repr__(self) -> str:
        return "\n".join([f"⚠ {w}" for w in self.warnings] + [self.view.text, f"  {self.note_2017}"])

    def _repr_html_(self) -> str:
        colour = COLOURS["OK"] if self.ok_2017 else COLOURS["ERROR"]
        warn = "".join(f'<div style="font-size:12px;color:{COLOURS["ERROR"]}">⚠ {html.escape(w)}</div>'
                       for w in self.warnings)
        return (warn + self.view.html + f'<div style="font-size:11px;color:{colour}">'
                f'{html.escape(self.note_2017)}</div>')


def _recipient_warnings(recipient: str | None) -> list[str]:
    """Why a server would refuse this recipient, although the checksum matches."""
    if recipient is None:
        return []
    if not recipient:
        return ["the recipient is empty: the checksum matches, but the server will answer "
                "with an error (no such user)"]
    if ":" in recipient or not P.USERNAME_RE.fullmatch(recipient):
        why = "':' separates the fields" if ":" in recipient else "usernames are 1-32 letters, digits, '_', '.' or '-', a letter first"
        return [f"{recipient!r} cannot be a username ({why}): the checksum matches, but the "
                "server will answer with an error (unknown recipient)"]
    return []


def frame_builder(session_id: str = "0123456789", recipient: str = "bob",
                  subject: str = "Hello", body: str = "How are you?") -> FrameBuilder:
    """A live frame builder: change a field and watch frame and checksum change."""
    return FrameBuilder(session_id, recipient, subject, body)


# --------------------------------------------------------------------------
# Noise


class NoiseForm(_Form):
    """Flip rate, seed, a *Send* button: each send logs in, sends one mail
    through a :class:`BitFlipChannel` with that rate and seed, and shows the
    attempts as a sequence diagram.  The same seed gives the same story."""

    title = "Send through a noisy channel"
    css_class = "mailkit-noise-form"

    def __init__(self, target, user: str, password: str, recipient: str, *,
                 rate: float = 0.3, seed: int = 1, subject: str = "Noise test",
                 body: str = "Did this arrive?", own_server: bool = False):
        self.target = target
        self.user, self._password, self.recipient = user, password, recipient
        self.subject, self.body = subject, body
        self.rate = W.FloatSlider(value=rate, min=0.0, max=1.0, step=0.05, description="flip rate",
                                  readout_format=".2f")
        # A text field, checked here: an IntText turned "2.5" into 25 on screen and ran seed 2.
        self.seed = W.Text(value=str(seed), description="seed", placeholder="a whole number")
        self.transcript = None
        super().__init__([self.rate, self.seed], "Send")
        if own_server:
            import secrets
            self._own = _OwnServer({user: password, recipient: secrets.token_hex(8)})

    def _seed(self) -> int:
        text = str(self.seed.value).strip()
        if not (text.lstrip("-").isdigit()):
            raise ValueError(f"seed {text!r}: type a whole number, e.g. 1")
        return int(text)

    def run(self):
        try:
            seed = self._seed()
        except ValueError as exc:
            return _Message(f"nothing sent: {exc}", "ERROR")
        client = MailClient(*self._target_address(), channel=BitFlipChannel(self.rate.value, seed=seed))
        client.login(self.user, self._password)
        try:
            client.send(self.recipient, self.subject, self.body)
            attempts = client.transcript[1:]
            verdict = f"delivered after {plural(len(attempts), 'attempt')}"
        except RetriesExhausted:
            attempts = client.transcript[1:]
            outcomes = ", ".join(e.outcome for e in attempts)
            verdict = f"NOT delivered: {len(attempts)} attempts ({outcomes})"
        self.transcript = attempts
        # The verdict first, the settings after, short enough for the diagram's width.
        return sequence_diagram(attempts, title=f"{verdict} · rate {self.rate.value:.2f}, seed {seed}")

    def describe_fields(self) -> list[str]:
        return [f"flip rate {self.rate.value:.2f}", f"seed      {self.seed.value}"]


def noise_form(target, user: str, password: str, recipient: str, **kwargs) -> NoiseForm:
    """A form that sends one mail from *user* to *recipient* through a noisy
    channel per click (see :class:`NoiseForm`).  *target* may be ``None``:
    the form then starts a small server of its own (with accounts for
    *user* and *recipient*) when first used."""
    return NoiseForm(target, user, password, recipient, own_server=target is None, **kwargs)


# --------------------------------------------------------------------------
# Pipelining (notebook 07)


class PipelineResult(_Message):
    """Stop-and-wait, Go-Back-N and Selective Repeat on the same settings."""

    def __init__(self, runs, theory: float):
        self.runs, self.theory = runs, theory
        lines = [f"theory without loss: {theory:.1f} mails/s"]
        # the first run is the stop-and-wait baseline; the others are named by
        # protocol even at window 1, where each IS stop-and-wait
        lines += [runs[0].summary("stop-and-wait")] + [run.summary() for run in runs[1:]]
        super().__init__("\n".join(lines))


class PipelineForm(_Form):
    """Sliders for loss, RTT (``rtt_ms``) and window; *Run* simulates 120
    mails with stop-and-wait, Go-Back-N and Selective Repeat on a virtual
    clock (:mod:`mailkit.pipelining`: instant, and the same seed gives the
    same run), and shows mails per second beside the theory."""

    title = "Pipelining: loss, RTT, window"
    css_class = "mailkit-pipeline-form"

    def __init__(self, *, loss: float = 0.1, rtt_ms: float = 40, window: int = 4, seed: int = 1):
        self.loss = W.FloatSlider(value=loss, min=0.0, max=0.5, step=0.05, description="loss",
                                  readout_format=".2f")
        self.rtt_ms = W.IntSlider(value=int(rtt_ms), min=0, max=200, step=10, description="RTT (ms)")
        self.window = W.IntSlider(value=window, min=1, max=16, step=1, description="window")
        self.seed_value = seed
        super().__init__([self.loss, self.rtt_ms, self.window], "Run")

    def run(self) -> PipelineResult:
        rtt, window, loss = self.rtt_ms.value / 1000, self.window.value, self.loss.value
        runs = [pipelining.simulate("gbn", window=1, rtt=rtt, loss=loss, seed=self.seed_value),
                pipelining.simulate("gbn", window=window, rtt=rtt, loss=loss, seed=self.seed_value),
                pipelining.simulate("sr", window=window, rtt=rtt, loss=loss, seed=self.seed_value)]
        return PipelineResult(runs, pipelining.throughput(window, 8000, 1e6, rtt))

    def describe_fields(self) -> list[str]:
        return [f"loss     {self.loss.value:.2f}", f"RTT      {self.rtt_ms.value} ms",
                f"window   {self.window.value}"]


def pipeline_form(**kwargs) -> PipelineForm:
    """A form with sliders for loss, RTT and window (see :class:`PipelineForm`)."""
    return PipelineForm(**kwargs)


# --------------------------------------------------------------------------
# Congestion control (notebook 09)


class CongestionForm(_Form):
    """Sliders for the bottleneck (rate, queue, one-way delay) and a choice
    of a second sender; *Run* simulates 30 virtual seconds of Reno through
    it (:mod:`mailkit.congestion`: instant and the same every time) and
    shows cwnd against time and the queue, with Jain's index for two."""

    title = "Congestion: one bottleneck, one or two senders"
    css_class = "mailkit-congestion-form"
    SECONDS = 30.0          # virtual seconds per run: several sawteeth, a few ms of CPU
    SECOND = {"none": None, "Reno": lambda: congestion.Reno(),
              "fixed window of 32": lambda: congestion.FixedWindow(32)}

    def __init__(self, *, rate: int = 100, buffer: int = 6, delay_ms: int = 50, second: str = "none"):
        self.rate = W.IntSlider(value=rate, min=20, max=400, step=20, description="rate (seg/s)")
        self.buffer = W.IntSlider(value=buffer, min=1, max=60, step=1, description="queue (seg)")
        self.delay_ms = W.IntSlider(value=delay_ms, min=5, max=200, step=5, description="delay (ms)")
        self.second = W.Dropdown(options=list(self.SECOND), value=second, description="2nd sender")
        super().__init__([self.rate, self.buffer, self.delay_ms, self.second], "Run")

    def run(self):
        from .pictures.congestion import CwndPlot
        link = congestion.Link(rate=self.rate.value, buffer=self.buffer.value, delay=self.delay_ms.value / 1000)
        senders = [congestion.Reno()]
        if self.SECOND[self.second.value] is not None:
            senders.append(self.SECOND[self.second.value]())
        run = congestion.simulate(senders, link=link, duration=self.SECONDS,
                                  starts=[0.0, 5.0][:len(senders)])
        return CwndPlot(run, title=f"{len(senders)} sender(s), {self.SECONDS:g} virtual s")

    def show(self, result) -> None:
        """The numbers as text, then the picture (JupyterLab shows one kind per item)."""
        import base64
        self.result = result
        items = [_bundle(_Message(repr(result)))]
        if hasattr(result, "_repr_png_"):
            items.append({"output_type": "display_data", "metadata": {},
                          "data": {"image/png": base64.b64encode(result._repr_png_()).decode("ascii"),
                                   "text/plain": "(the picture of cwnd and the queue)"}})
        self.output.outputs = tuple(items)

    def describe_fields(self) -> list[str]:
        return [f"rate     {self.rate.value} segments/s", f"queue    {self.buffer.value} segments",
                f"delay    {self.delay_ms.value} virtual ms each way", f"second   {self.second.value}"]


def congestion_form(**kwargs) -> CongestionForm:
    """A form for the bottleneck and a second sender (see :class:`CongestionForm`)."""
    return CongestionForm(**kwargs)
