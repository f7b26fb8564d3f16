"""A mail acknowledged with OK survives the server being killed (SIGKILL)."""

from __future__ import annotations

import signal

from mailkit import MailClient, REPLIES


def test_sigkill_right_after_ok_loses_nothing(serve_process, tmp_path):
    db = tmp_path / "class.db"
    first = serve_process("--quiet", db=db)
    alice = MailClient(*first.address)
    alice.login("alice", "wonderland")
    sent = []
    for i in range(30):
        assert alice.send("bob", f"mail {i}", f"body {i}") == REPLIES.EMAIL_SENT
        sent.append(f"mail {i}")
    first.proc.send_signal(signal.SIGKILL)           # no chance to clean up
    assert first.stop() == -signal.SIGKILL

    second = serve_process("--quiet", db=db)
    bob = MailClient(*second.address)
    bob.login("bob", "builder")
    assert [m.subject for m in bob.messages_from("alice")] == sent
