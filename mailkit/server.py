"""The fast mail server of PROTOCOL.md, in background threads a notebook can start.

    with MailServer(users={"alice": "wonderland", "bob": "builder"}) as server:
        host, port = server.address        # 127.0.0.1 and a free port
        ...                                # the server answers in its threads
    # here it is stopped: no thread left, the port is free

It is three parts put together, each of which can be read alone:

* a :class:`~mailkit.listener.Listener` reads each request in one event-loop
  thread and hands it, complete, to a worker thread;
* a :class:`~mailkit.responder.MailResponder` (or any object with
  ``respond(data, peer)``, passed as ``responder=``) turns it into a reply;
* a :class:`~mailkit.store.MailStore` keeps the mail; its group commit shares
  one fsync between the mails that arrive together.  An email's reply is a
  future that the store's writer completes once the mail is on disk; its
  callback hands the reply to the event loop, which sends it, so no thread
  waits per mail and the writer only writes.

Which thread calls the responder: a worker, except for ``email`` frames with
``emails_in_loop=True`` (the default when the server makes its own
:class:`~mailkit.responder.MailResponder`), which the event loop answers
itself.  MailResponder's ``respond()`` returns at once for an email (a
session lookup, then the store's future), and handing each mail to a worker
thread cost more CPU than the mail itself (measured: 307 against 172 µs per
mail with 32 senders; one thread wake-up per mail).  A responder passed in
is called in a worker for every request unless ``emails_in_loop=True`` says
that its ``respond()`` does not block for an email.

Each connection carries one request, gets one reply, and is closed; a
connection whose request got exactly ``KO`` (a damaged frame) and that the
client did not half-close stays open for ``KO_RESEND_S`` for ONE resend,
because the 2017 client resends on the same socket.  Every request is handled
inside one ``try``: whatever a client sends, the worst it gets is an error
reply and a log line, never a dead server.

:class:`~mailkit.simple_server.SimpleMailServer` does the same with one
thread per connection, in about a hundred lines: read that one first.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import Future

from . import protocol as P
from .listener import HANDED_ON, Listener, PortInUseError, Received, format_peer, send_and_close
from .limits import ClassLimits
from .responder import PIECE_BYTES, REPLIES, Listing, LoginThrottle, MailResponder, help_text, is_refusal, loggable, reply_text
from .store import SCRYPT_N, MailStore
from .tls import as_server_context, refuse_public_key

__all__ = ["MailServer", "PortInUseError", "REPLIES", "KO_RESEND_S", "help_text", "LoginThrottle"]

log = logging.getLogger("mailkit.server")

KO_RESEND_S = P.KO_RESEND_S     # see there


class MailServer(Listener):
    """The mail server, running in background threads.

    *users* maps usernames to passwords (stored as salted hashes); *db* is a
    SQLite file, or ``":memory:"`` for a server that forgets when closed
    (or pass a *store*); *scrypt_n* is the password-hash cost of a store made
    here.  *responder* decides the replies (a default
    :class:`~mailkit.responder.MailResponder` on the store if not given).
    *limits* (a :class:`~mailkit.limits.ClassLimits`; the defaults for a
    class of 300 if not given) bounds connections per address and in all,
    and the default responder's password and session-id guessing.
    *idle_timeout* is how long a request may pause between two pieces
    before it counts as complete (or, if it cannot be, too slow);
    *silent_timeout* how long a connection may stay silent before its first
    byte (by default the idle timeout) before it is closed without a reply.
    *tls* wraps every connection in TLS (not part of the 2017 protocol; see
    :mod:`mailkit.tls`): an ``ssl.SSLContext``, a ``(cert, key)`` pair of
    PEM files, or ``True`` for the teaching certificate of localhost (whose
    private key is public: with it, a *host* other than loopback raises
    ``ValueError``).  Each
    handshake runs in a worker with *tls_handshake_timeout* (default
    ``TLS_HANDSHAKE_TIMEOUT_S``); without *tls* nothing changes on the wire.
    ``start()`` returns once the server accepts connections (or raises why
    it cannot); ``stop()`` returns within a second and leaves no thread
    behind; both are safe to call twice, and a stopped server can be started
    again.  ``close()`` (and leaving a ``with`` block) also closes the store.
    Don't call ``stop()`` from inside a request handler.
    """

    KO_RESEND_S = KO_RESEND_S
    # The socket send buffer of a listing's connection: what the kernel holds
    # of a reply nobody reads (Linux doubles it for its bookkeeping).
    LISTING_SNDBUF = 128 * 1024

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        store: MailStore | None = None,
        responder=None,
        emails_in_loop: bool | None = None,
        scrypt_n: int = SCRYPT_N,
        idle_timeout: float | None = None,
        max_request_bytes: int = P.MAX_REQUEST_BYTES,
        limits: ClassLimits | None = None,
        silent_timeout: float | None = None,
        tls=None,
        tls_handshake_timeout: float | None = None,
    ):
        self.limits = limits if limits is not None else ClassLimits(max_connections=self.MAX_CONNECTIONS)
        tls = as_server_context(tls)
        refuse_public_key(tls, host)        # the teaching key is public: loopback only
        super().__init__(host, port, idle_timeout=idle_timeout, max_request_bytes=max_request_bytes,
                         slots=self.limits.slots, silent_timeout=silent_timeout,
                         tls=tls, tls_handshake_timeout=tls_handshake_timeout)
        if store is None:
            store = getattr(responder, "store", None) or MailStore(db, scrypt_n=scrypt_n)
        self.store = store
        for name, password in (users or {}).items():
            self.store.add_user(name, password, replace=True)
        self.responder = responder if responder is not None else MailResponder(self.store, limits=self.limits)
        self.emails_in_loop = responder is None if emails_in_loop is None else emails_in_loop
        self.requests_served = 0
        self._served_lock = threading.Lock()

    @property
    def throttle(self) -> LoginThrottle:
        """The default responder's login throttle."""
        return self.responder.throttle

    def close(self) -> None:
        """Stop, and close the store."""
        try:
            self.stop()
        finally:
            self.store.close()

    def __repr__(self) -> str:
        where = "%s:%d" % self.address if self.running else "stopped"
        return f"<{type(self).__name__} {where}>"

    def respond(self, data: bytes, peer=None) -> tuple[str, str]:
        """(what it was, the reply text) for one complete request, without a
        socket: the responder's answer, waiting for an email's commit."""
        what, reply = self.responder.respond(data, peer)
        return what, reply_text(reply)

    # -- one connection -------------------------------------------------------

    def dispatch(self, conn: socket.socket, peer, received: Received) -> None:
        """In the loop thread: an email frame is answered here (see the module
        docstring), every other request in a worker."""
        if self.emails_in_loop and received.error is None and _is_email(received.data):
            self.serve_request(conn, peer, received)
        else:
            super().dispatch(conn, peer, received)

    def handle_request(self, conn: socket.socket, peer, received: Received):
        started = time.perf_counter()
        if isinstance(received.error, P.RequestTooLarge):
            reply = f"ERROR: {received.error}"
            send_and_close(conn, reply.encode(), drain=True)
            self.forget(conn)
            self._served(peer, "too large", reply, started)
            return HANDED_ON
        if isinstance(received.error, TimeoutError):
            what, reply = "too slow", REPLIES.TOO_SLOW
        else:
            try:
                what, reply = self.responder.respond(received.data, peer)
            except Exception:   # one bad request must never take the server down
                log.exception("%s request failed", format_peer(peer))
                what, reply = "internal error", REPLIES.INTERNAL
        if isinstance(reply, Listing):  # getmsg, dump: in pieces, from this worker
            self._send_listing(conn, peer, reply)
            self._served(peer, what, reply.first_line(), started)
            return HANDED_ON
        if isinstance(reply, Future):   # an email: reply once it is on disk
            # The callback runs in the store's writer thread; the reply goes
            # out from the event loop, so the writer only writes.
            reply.add_done_callback(lambda done: self.call_in_loop(
                self._reply, conn, peer, received, what, _text(done, peer), started))
        else:
            self._reply(conn, peer, received, what, reply, started)
        return HANDED_ON

    def _reply(self, conn: socket.socket, peer, received: Received, what: str, reply: str,
               started: float) -> None:
        """Send the reply; close, or after a bare KO wait for a resend.  It
        may run in the store's writer thread: replies to emails are short,
        so the send does not wait for the client."""
        resend = reply == REPLIES.KO and not received.closed and not received.again
        # Replies sent here from the loop or the store's writer (an email's)
        # are short: they fit the socket's buffer, and the send never waits.
        send_and_close(conn, reply.encode("utf-8"), close=not resend)
        if resend:
            self.read_again(conn, peer, self.KO_RESEND_S)
        else:
            self.forget(conn)
        self._served(peer, what, reply, started)

    def _send_listing(self, conn: socket.socket, peer, listing: Listing) -> None:
        """Send a listing piece by piece: each piece is read from the store
        only once ClassLimits.replies has room for it, and let go once the
        kernel has taken it, so unread replies hold a bounded amount of
        memory.  A client that reads nothing for SEND_TIMEOUT_S, or a piece
        that finds no room in that time, ends the reply (the connection is
        closed: the client sees a short listing, never a wrong one)."""
        budget = self.limits.replies
        address = peer[0] if isinstance(peer, (tuple, list)) else peer
        try:
            # The kernel's share of an unread reply is bounded too (Linux
            # would grow a loopback send buffer to 4 MB).
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.LISTING_SNDBUF)
            conn.settimeout(self.SEND_TIMEOUT_S)    # per send: a client that reads nothing
            # While a listing goes out, its connection counts as busy only
            # as long as the client reads: each piece the kernel takes marks
            # it active, and one that reads nothing for ConnectionSlots'
            # idle_after may be closed to make room (unread dumps held every
            # slot of a full server).
            self.slots.active(conn)
            # The head goes out with the first piece, in one send: a 2017
            # client reads ONE recv(1024), so a short listing must arrive whole.
            head = listing.first_line().encode("utf-8")
            start = 0
            for hold, group in listing.pieces():
                # A piece of small messages (at most PIECE_BYTES of text) goes
                # at once: one per connection, so max_connections bound them.
                # A piece that is one big message waits for room in the budget.
                big = len(group) == 1 and group[0][1] > PIECE_BYTES
                if big and not budget.acquire(address, hold, self.SEND_TIMEOUT_S):
                    log.warning("%s listing cut short: no room for unread replies", format_peer(peer))
                    return
                try:
                    conn.sendall(head + listing.piece(group, start))
                    head = b""
                finally:
                    if big:
                        budget.release(address, hold)
                self.slots.active(conn)
                start += len(group)
            if head:                                # no message: the head is the whole reply
                conn.sendall(head)
        except OSError:             # the client left, or read nothing for SEND_TIMEOUT_S
            pass
        finally:
            self.forget(conn)

    def closed_silent(self, peer) -> None:
        self._served(peer, "nothing sent", None, None)

    def refused(self, peer, reply: str) -> None:
        """A connection refused at the door: logged once per address per minute."""
        now, due = self.limits.refusals.note(peer[0] if isinstance(peer, (tuple, list)) else peer)
        for line in due:
            log.info("%s", line)
        if now:
            log.warning("%s refused: %s", format_peer(peer), reply)

    def stop(self) -> None:
        super().stop()
        for line in self.limits.refusals.flush():   # the counts not logged yet
            log.info("%s", line)

    def _served(self, peer, what: str, reply: str | None, started: float | None) -> None:
        """Count one request and log its one line: who, what, the reply, how
        long.  Refusals are logged once per address per minute, then counted
        (limits.RefusalLog)."""
        with self._served_lock:
            self.requests_served += 1
        if log.isEnabledFor(logging.INFO):
            if is_refusal(reply):
                now, due = self.limits.refusals.note(peer[0] if isinstance(peer, (tuple, list)) else peer)
                for line in due:
                    log.info("%s", line)
                if not now:
                    return
            took = "" if started is None else " (%.1f ms)" % ((time.perf_counter() - started) * 1000)
            log.info("%s %s -> %s%s", format_peer(peer), loggable(what), loggable(_first_line(reply)), took)


def _is_email(data: bytes) -> bool:
    """``SESSIONID:email:`` at the start (a cheap test; the responder parses it)."""
    return data[P.SESSION_ID_LEN:P.SESSION_ID_LEN + 7] == b":email:" and data[:P.SESSION_ID_LEN].isdigit()


def _text(done: Future, peer) -> str:
    try:
        return done.result()
    except Exception:   # not the client's fault: say so, log why
        log.exception("%s email not stored", format_peer(peer))
        return REPLIES.INTERNAL


def _first_line(text: str | None) -> str:
    if text is None:
        return "(closed, no reply)"
    line = text.split("\n", 1)[0]
    return line if len(line) <= 60 else line[:60] + "…"
