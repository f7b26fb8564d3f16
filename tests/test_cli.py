"""``python -m mailkit``: serve, adduser, client, --help."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from mailkit import MailClient
from mailkit.store import MailStore


def run(*args, input=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "mailkit", *args], input=input,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [[], ["serve"], ["adduser"], ["client"]])
def test_help_everywhere(args):
    result = run(*args, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m mailkit")


def test_serve_prints_one_line_when_ready_and_stops_on_ctrl_c(serve_process):
    served = serve_process()
    assert re.fullmatch(r"mailkit listening on 127\.0\.0\.1:\d+\n", served.first_line)
    client = MailClient(*served.address)
    client.login("alice", "wonderland")
    assert client.count() == 0
    assert served.stop(signal.SIGINT) == 0
    assert served.stdout_rest == ""                 # exactly one line
    log = served.stderr
    assert re.search(r"login 'alice' -> OK:s:[0-9a-f]{6}", log)   # one log line per request, no session id
    assert "Traceback" not in log


def test_serve_stops_cleanly_on_sigterm(serve_process):
    assert serve_process("--quiet").stop(signal.SIGTERM) == 0


def test_serve_on_a_taken_port_fails_at_once_with_a_reason(serve_process):
    first = serve_process("--quiet")
    result = run("serve", "--port", str(first.address[1]), "--db", ":memory:", timeout=10)
    assert result.returncode == 1
    assert "already in use" in result.stderr


def test_adduser_reads_the_password_from_stdin(tmp_path):
    db = tmp_path / "users.db"
    result = run("adduser", "--db", str(db), "dave", input="s3cret:with colon\n")
    assert result.returncode == 0, result.stderr
    assert f"added dave to {db}" in result.stdout
    with MailStore(db) as store:
        assert store.check_password("dave", "s3cret:with colon")
    again = run("adduser", "--db", str(db), "dave", input="other\n")
    assert again.returncode == 1 and "dave" in again.stderr
    bad = run("adduser", "--db", str(db), "9lives", input="x\n")
    assert bad.returncode == 1 and "bad username" in bad.stderr


def test_interactive_client_runs_the_2017_menu(serve_process):
    served = serve_process("--quiet")
    host, port = served.address
    session = "\n".join([
        "alice", "wrong",                 # a failed login, then a good one
        "alice", "wonderland",
        "2", "bob", "Menu: test #1", "first line", "second: line", ".",
        "4",
        "1",
        "7",
    ]) + "\n"
    result = run("client", "--host", host, "--port", str(port), input=session)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "login failed: KO: wrong username or password" in out
    assert re.search(r"logged in as alice \(session \d{10}\)", out)
    assert "OK: Email Sent" in out
    assert "OK: 0 messages" in out
    assert "email:RECIPIENT:SUBJECT:BODY" in out
    assert "OK: Logged off" in out
    bob = MailClient(host, port)
    bob.login("bob", "builder")
    [message] = bob.messages_from("alice")
    assert (message.subject, message.body) == ("Menu: test #1", "first line\nsecond: line")


def test_ctrl_c_as_soon_as_serve_says_where_it_listens_stops_it(tmp_path):
    """Ctrl-C (SIGINT) the moment `serve` prints its address, while it still
    prints its limits and before it waits in serve_forever(): it stops, with
    status 0.  (A KeyboardInterrupt there left the server's threads, and the
    process, running: four tests' servers hung so on a loaded machine.)"""
    import signal
    import subprocess
    for i in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "mailkit", "serve", "--port", "0",
                                 "--db", str(tmp_path / f"m{i}.db"), "--user", "alice:wonderland"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("mailkit listening on ")
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"serve ignored Ctrl-C at start (try {i})") from None
        assert proc.returncode == 0
