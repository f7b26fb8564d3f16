"""HMAC-SHA256 tags on command frames: a course extension, NOT the 2017 protocol.

The 2017 frame ends in ``#`` and the SHA-1 of what comes before it.  SHA-1
here is a checksum, not a seal: it has no key, so whoever changes a frame in
flight computes the SHA-1 of the new frame and the server cannot tell
(notebook 10).  A MAC has a key: HMAC (RFC 2104) with SHA-256 gives a tag
that only a holder of the key can compute, so a rewritten frame fails.

The teaching framing (mailkit only; a 2017 client or server knows nothing of
it): the same frame, with the 64 hex digits of
``HMAC-SHA256(key, everything before '#')`` where the 40 of the SHA-1 were.

    0123456789:email:bob:Lunch:At noon#<64 hex digits>

The key, both ends: ``session_key(password, session_id)``, the HMAC of the
session id under the password.  The client knows its password; the teaching
server (:class:`MacResponder`) sees it in the login and keeps the key for
the session.  A simplification: a real protocol derives its keys from a
secret that never crosses the wire in clear (HKDF, RFC 5869, from TLS's
handshake); here the password DOES cross in clear, in the login, and that
is the point notebook 10 makes next.

Nor does a tag stop a replay: the same frame, tag and all, sent again in
its session verifies again (notebook 10 shows it; the cure is a sequence
number or nonce under the tag, as in TLS 1.3's record nonce, RFC 8446 5.3).

Nothing else changes: a server without :class:`MacResponder` and a client
without :class:`MacClient` speak the 2017 protocol byte for byte.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import re
import threading

from . import protocol as P
from .client import MailClient
from .responder import MailResponder

__all__ = ["TAG_LEN", "session_key", "tag", "seal", "split_tagged", "verify", "MacResponder",
           "MacClient", "NEEDS_TAG"]

TAG_LEN = 64                    # hex digits of an HMAC-SHA256 tag (32 bytes)
_TAGGED = re.compile(rb"#([0-9a-f]{%d})\Z" % TAG_LEN)
NEEDS_TAG = ("ERROR: this teaching server wants an HMAC-SHA256 tag after '#' "
             "(mailkit's extension, not the 2017 protocol: see mailkit.mac)")
# Keys a MacResponder keeps (one per session): the oldest go first, so a
# flood of logins holds a bounded amount of memory (about 200 bytes each).
MAX_KEYS = 10_000


def session_key(password: str, session_id: str) -> bytes:
    """The key both ends compute: HMAC-SHA256(password, b"mailkit-mac:" + session id)."""
    return hmac.new(password.encode("utf-8"), b"mailkit-mac:" + session_id.encode("ascii"),
                    hashlib.sha256).digest()


def tag(key: bytes, content: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of *content* under *key* (RFC 2104)."""
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def seal(frame: bytes, key: bytes) -> bytes:
    """A 2017 frame (``...#sha1``) with the HMAC tag in place of its SHA-1."""
    content = frame[:-P.CHECKSUM_LEN - 1] if P.looks_framed(frame) else frame
    return content + b"#" + tag(key, content).encode("ascii")


def split_tagged(frame: bytes) -> tuple[bytes, str] | None:
    """(content, claimed tag) of a tagged frame, or None if it carries no tag."""
    m = _TAGGED.search(frame)
    if m is None:
        return None
    return frame[:m.start()], m.group(1).decode("ascii")


def verify(key: bytes, frame: bytes) -> bool:
    """True if *frame* carries the right tag for *key*.  The comparison takes
    the same time wherever the first wrong digit is (``hmac.compare_digest``):
    a ``==`` that stops early lets an attacker find a tag digit by digit."""
    parts = split_tagged(frame)
    return parts is not None and hmac.compare_digest(tag(key, parts[0]), parts[1])


class MacResponder:
    """The teaching server's replies: a frame must carry the right HMAC tag.

    It wraps a :class:`~mailkit.responder.MailResponder` (which does the
    mail): a login goes through, and on ``OK`` the session's key is kept; a
    tagged frame whose tag verifies goes on as the 2017 frame it stands for
    (SHA-1 in place of the tag); a wrong tag gets ``KO``, as a bad checksum
    does (the client retries, then reports); a frame with no tag gets
    :data:`NEEDS_TAG`.  ``MailServer(responder=MacResponder(store))``."""

    def __init__(self, store, **kwargs):
        self.inner = MailResponder(store, **kwargs)
        self.store = store
        self._keys: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._lock = threading.Lock()

    def respond(self, data: bytes, peer=None):
        parts = split_tagged(data)
        if parts is None:
            if P.is_frame(data) or P.looks_framed(data):
                return "frame without a tag", NEEDS_TAG
            what, reply = self.inner.respond(data, peer)        # a login (or nonsense)
            if isinstance(reply, str) and reply.startswith("OK:"):
                user, _, password = data.decode("utf-8", "replace").partition(":")
                session_id = reply[3:3 + P.SESSION_ID_LEN]
                with self._lock:
                    self._keys[session_id] = session_key(password, session_id)
                    while len(self._keys) > MAX_KEYS:
                        self._keys.popitem(last=False)
            return what, reply
        content, claimed = parts
        session_id = content[:P.SESSION_ID_LEN].decode("ascii", "replace")
        with self._lock:
            key = self._keys.get(session_id)
        if key is None or not hmac.compare_digest(tag(key, content), claimed):
            return "bad tag", "KO"
        return self.inner.respond(content + b"#" + P.checksum(content).encode("ascii"), peer)


class MacClient(MailClient):
    """A :class:`~mailkit.client.MailClient` whose frames carry the HMAC tag
    of :func:`session_key` (for :class:`MacResponder`'s server only)."""

    key: bytes | None = None

    def login(self, user: str, password: str) -> str:
        session_id = super().login(user, password)
        self.key = session_key(password, session_id)
        return session_id

    def frame(self, name: str, *fields: str) -> bytes:
        frame = super().frame(name, *fields)
        return seal(frame, self.key) if self.key is not None else frame
