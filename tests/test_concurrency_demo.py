"""Notebook 01's concurrency demo: counts, not times."""

from __future__ import annotations

from mailkit.course.concurrency import OneAtATimeServer, SelectorServer, stall_test, thread_per_connection
from mailkit.course.pieces import live_arrival, stream_steps
from mailkit import make_frame


def test_one_at_a_time_server_is_stalled_then_catches_up():
    with OneAtATimeServer() as server:
        result = stall_test(server, clients=3, patience=0.5)
    assert (result.while_silent, result.after) == (0, 3)


def test_threads_and_selectors_are_not_stalled():
    server = OneAtATimeServer()
    server.dispatch = thread_per_connection(server.handle)
    with server:
        assert (stall_test(server, clients=4).while_silent, server.served >= 4) == (4, True)
    with SelectorServer() as sel:
        result = stall_test(sel, clients=4)
    assert (result.while_silent, result.after) == (4, 4)


def test_stream_steps_and_live_arrival():
    text = stream_steps().text
    assert "recv(65536) -> 16 bytes b'alice:wonderland'" in text
    assert "65,536 + 34,464 bytes" in text
    frame = make_frame("0123456789", "email", "bob", "Long", "x" * 100_000)
    live = live_arrival(frame)
    assert sum(live.pieces) == len(frame) and live.data_ok and len(live.pieces) > 1
    assert "complete only after the last piece: True" in live.text


def test_time_wait_and_reuseport():
    from mailkit.course.sockets import reuseport_demo, time_wait_demo
    lines = time_wait_demo()
    assert "EADDRINUSE" in lines[1] and lines[2].endswith("bound and listening")
    assert reuseport_demo() == ["two listening sockets with SO_REUSEPORT on one port: True"]
