"""``python -m mailkit serve`` as a class server: accounts without passwords
on the command line, a database that cannot be opened, the limit flags."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from mailkit import MailClient, ServerError
from mailkit.store import MailStore


def run(*args, input=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "mailkit", *args], input=input,
                          capture_output=True, text=True, timeout=timeout)


def test_an_unopenable_database_is_one_line_naming_it_and_exit_2(tmp_path):
    for bad in (tmp_path / "no" / "such" / "mail.db", tmp_path):
        result = run("serve", "--port", "0", "--db", str(bad))
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"cannot open the mail database {bad}" in result.stderr
        assert "Traceback" not in result.stderr
    result = run("adduser", "--db", str(tmp_path / "no" / "x.db"), "dave", input="pw\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_help_says_how_to_keep_passwords_out_of_ps():
    serve = run("serve", "--help").stdout
    assert "--users-file FILE" in serve and "shows in ps" in serve
    for flag in ("--quota-messages", "--quota-mb", "--max-db-mb"):
        assert flag in serve
    assert "standard input" in run("adduser", "--help").stdout


def test_serve_reads_accounts_from_a_private_users_file(tmp_path, serve_process):
    users = tmp_path / "users.txt"
    users.write_text("# the class\ndave:s3cret:with colon\n\nerin:pw2\n")
    users.chmod(0o600)
    served = serve_process("--quiet", "--users-file", str(users), users={})
    try:
        client = MailClient(*served.address)
        client.login("dave", "s3cret:with colon")
        MailClient(*served.address).login("erin", "pw2")
        cmdline = open(f"/proc/{served.proc.pid}/cmdline", "rb").read()
        assert b"s3cret" not in cmdline                        # nothing for `ps` to show
    finally:
        served.stop()
    db = tmp_path / "mail.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with MailStore(db) as store:
        assert store.users() == ["dave", "erin"]


def test_a_users_file_others_can_read_is_refused(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("dave:pw\n")
    users.chmod(0o644)
    result = run("serve", "--port", "0", "--db", str(tmp_path / "m.db"), "--users-file", str(users))
    assert result.returncode == 2
    assert f"chmod 600 {users}" in result.stderr and "Traceback" not in result.stderr
    users.chmod(0o600)
    users.write_text("dave\n")
    result = run("serve", "--port", "0", "--db", str(tmp_path / "m.db"), "--users-file", str(users))
    assert result.returncode == 2 and "line 1: expected NAME:PASSWORD" in result.stderr


def test_the_quota_flags_reach_the_store(tmp_path, serve_process):
    served = serve_process("--quiet", "--quota-messages", "2", db=tmp_path / "q.db")
    client = MailClient(*served.address)
    client.login("alice", "wonderland")
    client.send("alice", "one", "x")
    client.send("alice", "two", "x")
    with pytest.raises(ServerError, match="^ERROR: mailbox full: alice cannot receive mail"):
        client.send("alice", "three", "x")
    assert client.count() == 2
