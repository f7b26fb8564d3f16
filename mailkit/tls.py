"""TLS for the mail protocol: the contexts a server and a client use (stdlib ``ssl``).

The 2017 protocol has no TLS: without it, every byte, passwords included,
crosses in clear (notebook 10 shows them).  mailkit can wrap each connection
in TLS (TLS 1.3, RFC 8446; TLS 1.2, RFC 5246, is the oldest it accepts);
inside, the protocol is byte for byte the same.  A server started without
TLS is the 2017 one, unchanged.

    with MailServer(users, tls=server_context()) as server:       # the teaching certificate
        client = MailClient(*server.address, tls=True, cafile=TEACHING_CERT)

``server_context(cert, key)`` loads a certificate and its key;
``client_context(cafile)`` is :func:`ssl.create_default_context`: it checks
the certificate against the system's CAs (or *cafile*) and the host name
against the certificate's subjectAltName (RFC 6125, now RFC 9525); a client
without *cafile* trusts only the system's CAs, so a self-signed certificate
fails with :class:`ssl.SSLCertVerificationError`.

:data:`TEACHING_CERT` / :data:`TEACHING_KEY`: a self-signed pair for
``localhost``, ``127.0.0.1`` and ``::1``, committed so that TLS runs on any
machine on loopback (the standard library cannot make certificates).  Its
private key is public: for teaching on loopback only (mailkit/certs/README.md).
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TEACHING_CERT", "TEACHING_KEY", "IMPOSTOR_CERT", "IMPOSTOR_KEY", "server_context", "client_context", "as_server_context",
           "MIN_VERSION"]

CERT_DIR = Path(__file__).resolve().parent / "certs"
TEACHING_CERT = str(CERT_DIR / "localhost-cert.pem")
TEACHING_KEY = str(CERT_DIR / "localhost-key.pem")
# An attacker's certificate, also for localhost, that no client trusts (notebook 10, lab 10).
IMPOSTOR_CERT = str(CERT_DIR / "impostor-cert.pem")
IMPOSTOR_KEY = str(CERT_DIR / "impostor-key.pem")
# TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 (RFC 5246) and 1.3 (RFC 8446) remain.
MIN_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(cert: str = TEACHING_CERT, key: str | None = None) -> ssl.SSLContext:
    """A server's context with *cert* (a PEM file) and its private *key*
    (default: the teaching pair).  Raises ``OSError``/``ssl.SSLError`` if
    they cannot be read or do not match."""
    if key is None:
        key = {TEACHING_CERT: TEACHING_KEY, IMPOSTOR_CERT: IMPOSTOR_KEY}.get(cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSION
    context.load_cert_chain(cert, key)
    return context


def client_context(cafile: str | None = None) -> ssl.SSLContext:
    """The standard client context: the certificate must chain to a CA the
    system trusts, or to *cafile*, and name the host (``check_hostname``)."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = MIN_VERSION
    return context


def as_server_context(tls) -> ssl.SSLContext | None:
    """``MailServer(tls=...)``: None (no TLS), an ``ssl.SSLContext``, a
    ``(cert, key)`` pair of file names, or ``True`` (the teaching pair)."""
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return server_context()
    if isinstance(tls, (tuple, list)) and len(tls) == 2:
        return server_context(str(tls[0]), str(tls[1]))
    raise TypeError(f"tls= takes an ssl.SSLContext, a (cert, key) pair or True, not {tls!r}")
