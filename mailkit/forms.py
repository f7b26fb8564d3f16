"""The course's small forms (ipywidgets): log in, build a frame, send through noise.

Each form is a widget box with its parts as attributes (``form.user``,
``form.button``, ``form.output``...), so a notebook cell or a test can fill
it in and press the button from code::

    form = login_form(server)
    form.user.value, form.password.value = "alice", "wonderland"
    form.click()            # what the button does; returns the result

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
from .noise import BitFlipChannel
from .pictures import COLOURS, frame_html, sequence_diagram
from .text import clip, plural

__all__ = ["LoginForm", "login_form", "FrameBuilder", "frame_builder", "NoiseForm", "noise_form"]


def _address(target) -> tuple[str, int]:
    """A server (anything with ``.address``) or a ``(host, port)`` pair."""
    return tuple(target.address) if hasattr(target, "address") else tuple(target)


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

    def __init__(self, fields: list, button_label: str | None, **kwargs):
        self.output = W.Output(layout=W.Layout(border="1px solid #d1d5db", padding="4px",
                                               min_height="2em"))
        self.result = None
        self.button = None
        children = [W.HTML(f"<b>{html.escape(self.title)}</b>"), *fields]
        if button_label:
            self.button = W.Button(description=button_label, button_style="primary")
            self.button.on_click(lambda _button: self.click())
            children.append(self.button)
        children.append(self.output)
        super().__init__(children, **kwargs)

    def click(self):
        """Do what the button does; show the result in the output area and return it."""
        try:
            result = self.run()
        except Exception as exc:        # a form must tell the student, not die silently
            result = _Message(f"{type(exc).__name__}: {exc}", "ERROR")
        self.show(result)
        return result

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

    def __init__(self, target, user: str = "", password: str = ""):
        self.target = target
        self.client: MailClient | None = None
        self.user = W.Text(value=user, description="user")
        self.password = W.Password(value=password, description="password")
        super().__init__([self.user, self.password], "Log in")

    def fill(self, user: str, password: str) -> "LoginForm":
        self.user.value, self.password.value = user, password
        return self

    def run(self) -> LoginResult:
        client = MailClient(*_address(self.target), retries=0)
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


def login_form(target, user: str = "", password: str = "") -> LoginForm:
    """A login form for the server *target* (a server, or ``(host, port)``)."""
    return LoginForm(target, user, password)


# --------------------------------------------------------------------------
# Frame builder


class FrameBuilder(_Form):
    """Recipient, subject and body; the frame and its checksum update as
    you type (no button).  ``.frame`` is the frame as bytes."""

    title = "Frame builder (email)"

    def __init__(self, session_id: str = "0123456789", recipient: str = "bob",
                 subject: str = "Hello", body: str = "How are you?"):
        self.session_id = W.Text(value=session_id, description="session id")
        self.recipient = W.Text(value=recipient, description="recipient")
        self.subject = W.Text(value=subject, description="subject")
        self.body = W.Textarea(value=body, description="body")
        fields = [self.session_id, self.recipient, self.subject, self.body]
        super().__init__(fields, None)
        for f in fields:
            f.observe(self._changed, names="value")
        self.click()

    def _changed(self, change) -> None:
        self.click()

    @property
    def frame(self) -> bytes:
        return P.make_frame(self.session_id.value, "email", self.recipient.value,
                            self.subject.value, self.body.value)

    def run(self) -> "BuiltFrame":
        return BuiltFrame(self.frame)

    def describe_fields(self) -> list[str]:
        return [f"{w.description:<10} {w.value!r}" for w in
                (self.session_id, self.recipient, self.subject, self.body)]


class BuiltFrame:
    """A frame, its parts, its checksum, and what a 2017 parser makes of it."""

    def __init__(self, frame: bytes):
        self.frame = frame
        self.view = frame_html(frame)
        _, claimed, ok = P.parse_2017(frame)
        self.ok_2017 = ok
        self.note_2017 = ("a 2017 parser (first '#') reads it correctly" if ok else
                          f"a 2017 parser (first '#') takes '{clip(claimed, 20)}' for the checksum "
                          "and answers KO")

    def __repr__(self) -> str:
        return f"{self.view.text}\n  {self.note_2017}"

    def _repr_html_(self) -> str:
        colour = COLOURS["OK"] if self.ok_2017 else COLOURS["ERROR"]
        return (self.view.html + f'<div style="font-size:11px;color:{colour}">'
                f'{html.escape(self.note_2017)}</div>')


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

    def __init__(self, target, user: str, password: str, recipient: str, *,
                 rate: float = 0.3, seed: int = 1, subject: str = "Noise test",
                 body: str = "Did this arrive?"):
        self.target = target
        self.user, self._password, self.recipient = user, password, recipient
        self.subject, self.body = subject, body
        self.rate = W.FloatSlider(value=rate, min=0.0, max=1.0, step=0.05, description="flip rate",
                                  readout_format=".2f")
        self.seed = W.IntText(value=seed, description="seed")
        self.transcript = None
        super().__init__([self.rate, self.seed], "Send")

    def run(self):
        client = MailClient(*_address(self.target),
                            channel=BitFlipChannel(self.rate.value, seed=self.seed.value))
        client.login(self.user, self._password)
        try:
            client.send(self.recipient, self.subject, self.body)
            attempts = client.transcript[1:]
            verdict = f"delivered after {plural(len(attempts), 'attempt')}"
        except RetriesExhausted as exc:
            attempts = client.transcript[1:]
            verdict = f"NOT delivered: {exc}"
        self.transcript = attempts
        return sequence_diagram(attempts, title=f"flip rate {self.rate.value:.2f}, seed "
                                                f"{self.seed.value}: {verdict}")

    def describe_fields(self) -> list[str]:
        return [f"flip rate {self.rate.value:.2f}", f"seed      {self.seed.value}"]


def noise_form(target, user: str, password: str, recipient: str, **kwargs) -> NoiseForm:
    """A form that sends one mail from *user* to *recipient* through a noisy
    channel per click (see :class:`NoiseForm`)."""
    return NoiseForm(target, user, password, recipient, **kwargs)
