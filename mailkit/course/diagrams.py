"""Fixed pictures the notebooks show, drawn as :class:`~mailkit.pictures.Ladder`."""

from __future__ import annotations

from ..pictures import Ladder

__all__ = ["tcp_connection_diagram", "threads_diagram", "handshake_diagram", "rdt21_diagram"]


def tcp_connection_diagram():
    """The life of one connection of the mail protocol, TCP segments included."""
    return Ladder(["client", "server"], [
        ("client", "server", "SYN", "ink", "connect(): TCP's three-way handshake ..."),
        ("server", "client", "SYN-ACK"),
        ("client", "server", "ACK", "ink", "... the connection is open"),
        ("client", "server", "alice:wonderland", "ink", "sendall(): the request"),
        ("client", "server", "FIN", "ink", "shutdown(SHUT_WR): that was all I send"),
        ("server", "server", "reads the request, answers it"),
        ("server", "client", "OK:<session id>", "OK", "sendall(): the reply (it also ACKs the FIN)"),
        ("server", "client", "FIN", "ink", "close(): the client's recv() now returns b''"),
        ("client", "server", "ACK", "ink", "of the server's FIN; close() sends no second FIN"),
        ("client", "client", "TIME_WAIT: closed first, waits 2 x MSL"),
    ], title="one connection, one request, one reply (ACKs of data left out)")


def threads_diagram():
    """Who does what when a notebook runs a server in background threads."""
    cell, srv, worker = "your cells", "server thread", "worker thread"
    return Ladder([cell, srv, worker], [
        (cell, srv, "server.start()", "ink", "bind, listen, start the server thread; return"),
        (cell, cell, "the cell ends: the next cell may run"),
        (cell, srv, "connect()", "ink", "a client socket, in your cell"),
        (srv, srv, "accept(); selectors: watch every socket"),
        (cell, srv, "alice:wonderland", "ink", "recv() as soon as bytes arrive"),
        (srv, worker, "the whole request, to a worker"),
        (srv, srv, "back to the selector: other clients"),
        (worker, cell, "OK:<session id>", "OK"),
        (worker, worker, "close(); wait for the next request"),
        (cell, srv, "server.stop()", "ink", "wake it, cut open connections, join every thread"),
    ], title="a server in background threads, a client in your cells")


def handshake_diagram():
    """The login handshake, both outcomes."""
    return Ladder(["client", "server"], [
        ("client", "server", "alice:wonderland", "ink", "USERNAME:PASSWORD, nothing else"),
        ("server", "server", "checks the password's hash"),
        ("server", "client", "OK:<session id>", "OK", "ten digits: the key to every later command"),
        ("client", "server", "alice:wrong", "ink", "a new connection, a wrong password"),
        ("server", "client", "KO: wrong username or password", "ERROR", "no session id"),
        ("client", "server", "<session id>:count#<sha1>", "ink", "a command carries the session id"),
        ("server", "client", "OK: 0 messages", "OK"),
    ], title="the handshake: USERNAME:PASSWORD -> OK:SESSION_ID or KO")


def rdt21_diagram():
    """rdt2.1's answer to a corrupted acknowledgement, as mail."""
    return Ladder(["sender", "receiver"], [
        ("sender", "receiver", "[seq 0] Lunch?", "ink", "mail 1 carries sequence number 0"),
        ("receiver", "receiver", "expects 0: delivers it, now expects 1"),
        ("receiver", "sender", "OK [ack 0]#<sha1>", "flip", "a bit flips: the reply's checksum fails"),
        ("sender", "receiver", "[seq 0] Lunch?", "ink", "not acknowledged: send the same again"),
        ("receiver", "receiver", "expects 1, got 0: a duplicate, NOT delivered"),
        ("receiver", "sender", "OK: duplicate [ack 0]#<sha1>", "OK", "but acknowledged again"),
        ("sender", "receiver", "[seq 1] Dinner?", "ink", "mail 2 carries 1"),
        ("receiver", "sender", "OK [ack 1]#<sha1>", "OK"),
    ], title="sequence numbers: a resent mail is recognised, not delivered twice")
