"""TLS around the protocol (mailkit.tls): server, client, command line, widget.

Real sockets on 127.0.0.1, port 0, the committed teaching certificate.
Without TLS the wire is the 2017 protocol's, byte for byte (the last test,
beside tests/test_interop.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from mailkit import MailClient, MailServer, make_frame, make_handshake
from mailkit.attack import Tap, tls_records
from mailkit.client import request_once
from mailkit.limits import ConnectionSlots
from mailkit.tls import (TEACHING_CERT, TEACHING_KEY, as_server_context, client_context, server_context,
                         uses_public_key)

USERS = {"alice": "wonderland", "bob": "builder"}


@pytest.fixture
def tls_server():
    with MailServer(USERS, tls=True, tls_handshake_timeout=1.0) as server:
        yield server


def tls_client(server, user=None, password=None, **kwargs) -> MailClient:
    kwargs.setdefault("cafile", TEACHING_CERT)
    client = MailClient(*server.address, tls=True, **kwargs)
    if user:
        client.login(user, password)
    return client


def test_a_session_over_tls_with_a_100_kb_body(tls_server):
    alice = tls_client(tls_server, "alice", "wonderland")
    body = "".join(f"line {i:05d} of a long mail\n" for i in range(4000))   # > 100 KB: many TLS records
    assert len(body) > 100_000
    assert alice.send("bob", "Long", body) == "OK: Email Sent"
    bob = tls_client(tls_server, "bob", "builder")
    assert [m.body for m in bob.dump()] == [body]
    assert bob.count() == 1
    assert bob.logoff().startswith("OK")


def test_every_server_hostname_the_certificate_names(tls_server):
    for name in ("localhost", "127.0.0.1"):
        assert tls_client(tls_server, "alice", "wonderland", server_hostname=name).count() == 0


def test_an_unknown_ca_fails_with_a_verification_error_and_is_not_retried(tls_server):
    client = MailClient(*tls_server.address, tls=True)        # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        client.login("alice", "wonderland")
    assert caught.value.verify_message == "self-signed certificate"
    assert len(client.transcript) == 1
    assert client.transcript[0].error == "certificate not accepted: self-signed certificate"


def test_a_wrong_hostname_fails_with_a_hostname_mismatch(tls_server):
    client = tls_client(tls_server, server_hostname="mail.example.org")
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        client.login("alice", "wonderland")
    assert "Hostname mismatch" in caught.value.verify_message
    assert "mail.example.org" in caught.value.verify_message


def test_a_plain_client_on_the_tls_port_gets_a_clean_close_and_the_next_is_served(tls_server):
    # A 2017 client: sends its login unterminated and waits.  No reset: b"".
    assert request_once(tls_server.address, make_handshake("alice", "wonderland"), half_close=False) == b""
    assert request_once(tls_server.address, b"x" * 5000) == b""
    assert tls_client(tls_server, "alice", "wonderland").count() == 0


def test_a_silent_client_never_holds_the_accept_loop(tls_server):
    """A client that connects and never starts its handshake waits in a
    worker thread; clients after it are served meanwhile, and it is closed
    after tls_handshake_timeout."""
    with socket.create_connection(tls_server.address) as silent:
        for _ in range(3):
            assert tls_client(tls_server, "alice", "wonderland").count() == 0
        silent.settimeout(30)
        assert silent.recv(100) == b""          # closed by the server, without a word
    assert tls_client(tls_server, "bob", "builder").count() == 0


def test_a_tls_client_against_a_plain_server_fails_without_sending_the_password():
    with MailServer(USERS) as server, Tap(server.address) as tap:
        client = MailClient(*tap.address, tls=True, cafile=TEACHING_CERT, retries=0)
        with pytest.raises(OSError):
            client.login("alice", "wonderland")
        assert b"wonderland" not in tap.sent()


def test_what_the_path_sees_with_and_without_tls():
    frame_bytes = []
    for tls in (False, True):
        with MailServer(USERS, tls=tls or None) as server, Tap(server.address) as tap:
            client = MailClient(*tap.address, tls=tls, cafile=TEACHING_CERT if tls else None)
            session = client.login("alice", "wonderland")
            client.send("bob", "Lunch", "At noon")
            sent = tap.sent()
            frame_bytes.append((sent, session))
    (clear, session), (secret, _) = frame_bytes
    # In clear: exactly the 2017 bytes, password included.
    assert clear == make_handshake("alice", "wonderland") + make_frame(session, "email", "bob", "Lunch", "At noon")
    # With TLS: records only (a handshake first), nothing of the text.
    records = tls_records(secret)
    assert records[0].kind == "handshake"
    assert {r.kind for r in records} <= {"handshake", "change_cipher_spec", "application_data"}
    assert sum(5 + r.length for r in records) == len(secret)
    for text in (b"wonderland", b"alice", b"noon", b"Lunch"):
        assert text not in secret


@pytest.mark.parametrize("record", [1, 2])
def test_a_flipped_bit_in_a_tls_record_is_refused(record):
    with MailServer(USERS, tls=True) as server, Tap(server.address, flip_record=record) as tap:
        client = MailClient(*tap.address, tls=True, cafile=TEACHING_CERT, retries=0)
        with pytest.raises(Exception) as caught:
            client.login("alice", "wonderland")
        assert "BAD_RECORD_MAC" in str(caught.value).upper()


def test_contexts():
    assert client_context().check_hostname and client_context().verify_mode == ssl.CERT_REQUIRED
    assert client_context().minimum_version >= ssl.TLSVersion.TLSv1_2
    assert as_server_context(None) is None and as_server_context(False) is None
    ctx = server_context()
    assert as_server_context(ctx) is ctx
    assert isinstance(as_server_context((TEACHING_CERT, TEACHING_KEY)), ssl.SSLContext)
    with pytest.raises(TypeError):
        as_server_context("cert.pem")
    with pytest.raises(ValueError):
        MailClient("127.0.0.1", 1, cafile=TEACHING_CERT)     # a CA file without tls=True


def test_the_teaching_certificate_is_valid_for_decades():
    info = ssl._ssl._test_decode_cert(TEACHING_CERT)       # the stdlib's own decoder (no openssl needed)
    assert ("DNS", "localhost") in info["subjectAltName"] and ("IP Address", "127.0.0.1") in info["subjectAltName"]
    assert ssl.cert_time_to_seconds(info["notBefore"]) <= ssl.cert_time_to_seconds("Jan  1 00:00:00 2021 GMT")
    assert ssl.cert_time_to_seconds(info["notAfter"]) >= ssl.cert_time_to_seconds("Jan  1 00:00:00 2100 GMT")


def test_slots_follow_a_socket_into_tls():
    slots = ConnectionSlots(total=4, per_address=4)
    assert slots.open("raw", "10.0.0.1")[0]
    slots.replace("raw", "tls")
    assert slots.count("10.0.0.1") == 1
    slots.close("raw")
    assert slots.count("10.0.0.1") == 1
    slots.close("tls")
    assert slots.count() == 0


def test_serve_and_client_with_tls_on_the_command_line(serve_process):
    served = serve_process("--tls-cert", TEACHING_CERT, "--tls-key", TEACHING_KEY)
    client = MailClient(*served.address, tls=True, cafile=TEACHING_CERT)
    client.login("alice", "wonderland")
    assert client.count() == 0
    script = "alice\nwonderland\n4\n7\n"
    out = subprocess.run([sys.executable, "-m", "mailkit", "client", "--port", str(served.address[1]),
                          "--tls", "--cafile", TEACHING_CERT], input=script, capture_output=True,
                         text=True, timeout=60)
    assert "logged in as alice" in out.stdout and "(TLS)" in out.stdout
    refused = subprocess.run([sys.executable, "-m", "mailkit", "client", "--port", str(served.address[1]),
                              "--tls"], input=script, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "certificate is not accepted: self-signed certificate" in refused.stdout
    assert served.stop() == 0
    assert "TLS only" in served.stderr and "Traceback" not in served.stderr
    assert "WARNING: this is mailkit's teaching certificate" in served.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.0.2.7", "mail.example.org"])
def test_the_teaching_pair_is_refused_off_loopback(host, tmp_path):
    """Its private key is public: MailServer refuses it (and a copy of it)
    on any address but loopback, before binding."""
    copy_cert, copy_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    copy_cert.write_text(open(TEACHING_CERT).read())
    copy_key.write_text(open(TEACHING_KEY).read())
    for tls in (True, (TEACHING_CERT, TEACHING_KEY), server_context(str(copy_cert), str(copy_key))):
        with pytest.raises(ValueError, match="private key is public"):
            MailServer(USERS, host=host, tls=tls)


def test_the_teaching_pair_serves_on_every_loopback_address():
    for host in ("127.0.0.1", "localhost"):
        with MailServer(USERS, host=host, tls=True) as server:
            assert MailClient(*server.address, tls=True, cafile=TEACHING_CERT).login("alice", "wonderland")
    assert not uses_public_key(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def test_serve_refuses_the_teaching_pair_on_every_address():
    result = subprocess.run([sys.executable, "-m", "mailkit", "serve", "--host", "0.0.0.0", "--port", "0",
                             "--db", ":memory:", "--tls-cert", TEACHING_CERT, "--tls-key", TEACHING_KEY],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "private key is public" in result.stderr
    assert "mailkit listening" not in result.stdout


def test_serve_with_a_missing_key_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db", ":memory:",
                             "--tls-cert", str(tmp_path / "none.pem")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "cannot use the certificate" in result.stderr


def test_the_widget_client_logs_in_with_tls(tls_server):
    from mailkit.widgets import MailClientApp

    app = MailClientApp(tls_server, tls=True, cafile=TEACHING_CERT, background=False)
    app.ui.user.value, app.ui.password.value = "alice", "wonderland"
    app.ui.login.click()
    assert app.client is not None and app.client.tls is not None
    assert "Logged in as alice" in app.ui.status.value
    plain = MailClientApp(tls_server, tls=True, background=False)     # no cafile: the system's CAs
    plain.ui.user.value, plain.ui.password.value = "alice", "wonderland"
    plain.ui.login.click()
    assert plain.client is None
    assert "certificate is not accepted (self-signed certificate)" in plain.ui.status.value


def _guide_block(starting: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "instructor.md").read_text(encoding="utf-8")
    found = [b for b in re.findall(r"^```\n(.*?)^```$", text, re.S | re.M) if b.startswith(starting)]
    assert len(found) == 1, starting
    return found[0]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the guide's block runs openssl")
def test_the_guides_class_server_tls_blocks_run_as_written(tmp_path):
    """docs/instructor.md, "TLS on a class server": the certificate block runs
    verbatim; its serve command and the students' client command run
    verbatim too, with ``--host 127.0.0.1 --port 0`` (and the port it
    printed) appended, since argparse takes the last: no fixed port here."""
    block = _guide_block("openssl req -x509")
    make, _, serve = block.partition("python -m mailkit serve")
    done = subprocess.run(["bash", "-e", "-c", make], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "class-key.pem").stat().st_mode & 0o077 == 0
    users = tmp_path / "class-users.txt"
    users.write_text("alice:wonderland\n")
    users.chmod(0o600)
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    serve_line = "exec python -m mailkit serve" + serve.rstrip("\n") + " --host 127.0.0.1 --port 0"
    server = subprocess.Popen(["bash", "-c", serve_line], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        port = int(first.strip().rpartition(":")[2])
        client = MailClient("127.0.0.1", port, tls=True, cafile=str(tmp_path / "class-cert.pem"),
                            server_hostname="mail.example.edu")
        client.login("alice", "wonderland")
        students = _guide_block("python -m mailkit client --host 10.0.0.5 --port 2526 --tls").strip()
        done = subprocess.run(["bash", "-c", f"{students} --host 127.0.0.1 --port {port}"], cwd=tmp_path,
                              env=env, input="alice\nwonderland\n4\n7\n", capture_output=True, text=True,
                              timeout=60)
        assert "logged in as alice" in done.stdout, done.stdout + done.stderr
        assert "OK: 0 messages" in done.stdout
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def test_a_live_loopback_capture_shows_the_password_in_clear_only_without_tls():
    """The kit's own capture (mailkit.capture.Sniffer, a raw socket on lo:
    root or CAP_NET_RAW; CI runs as root, so there it must run): the login's
    TCP payloads hold the password without TLS, and not with it."""
    from mailkit import capture as C

    if not C.can_capture():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI runs as root, where a live capture must work")
        pytest.skip("live capture needs root or CAP_NET_RAW (it runs in CI)")
    seen = {}
    for tls in (False, True):
        with MailServer(USERS, tls=tls or None) as server:
            port = server.address[1]
            with C.Sniffer([port]) as sniffer:
                MailClient(*server.address, tls=tls, cafile=TEACHING_CERT if tls else None).login("alice", "wonderland")
                # until the connection ended (the server's FIN; or, with TLS, the reset
                # the client's closed socket answers the server's late close_notify with)
                assert sniffer.wait_for(lambda segs: any((s.sport == port and s.flags & 0x01) or s.flags & 0x04
                                                         for s in segs), 10)
            segments = sniffer.segments()
        seen[tls] = b"".join(s.payload for s in segments if s.dport == port)
    assert b"alice:wonderland" in seen[False]
    assert seen[True][:1] == b"\x16" and b"wonderland" not in seen[True] and len(seen[True]) > 500
