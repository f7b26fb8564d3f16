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
the certificate against the system's CAs (or *cafile* instead) and the host name
against the certificate's subjectAltName (RFC 6125, now RFC 9525); a client
without *cafile* trusts only the system's CAs, so a self-signed certificate
fails with :class:`ssl.SSLCertVerificationError`.

:data:`TEACHING_CERT` / :data:`TEACHING_KEY`: a self-signed pair for
``localhost``, ``127.0.0.1`` and ``::1``, committed so that TLS runs on any
machine on loopback (the standard library cannot make certificates).  Its
private key is public: for teaching on loopback only (mailkit/certs/README.md).
A server context made with either committed pair is marked
(:func:`uses_public_key`), and ``MailServer`` refuses to bind it to any
address but loopback (:func:`refuse_public_key`): whoever has the key can
impersonate that server, and everyone has the key.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

__all__ = ["TEACHING_CERT", "TEACHING_KEY", "IMPOSTOR_CERT", "IMPOSTOR_KEY", "server_context", "client_context", "as_server_context",
           "MIN_VERSION",
           "uses_public_key", "refuse_public_key"]

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
    context.mailkit_public_key = _is_committed(cert) or (key is not None and _is_committed(key))
    return context


def _pem_body(path: str) -> str:
    """The base64 of a PEM file's blocks, without lines and headers."""
    return "".join(line.strip() for line in Path(path).read_text("ascii", "replace").splitlines()
                   if line.strip() and not line.startswith("-----"))


def _is_committed(path: str) -> bool:
    """True if *path* holds one of mailkit's committed certificates or keys
    (by content: a copy elsewhere counts too)."""
    try:
        body = _pem_body(path)
    except OSError:
        return False
    return any(_pem_body(known) in body for known in (TEACHING_CERT, TEACHING_KEY, IMPOSTOR_CERT, IMPOSTOR_KEY))


def uses_public_key(context: ssl.SSLContext | None) -> bool:
    """True if *context* serves one of mailkit's committed pairs, whose
    private keys are public."""
    return bool(getattr(context, "mailkit_public_key", False))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False            # a name, or "" (every address): not loopback


def refuse_public_key(context: ssl.SSLContext | None, host: str) -> None:
    """Raise ``ValueError`` if *context* serves a committed teaching pair
    (its private key is public) on an address other than loopback."""
    if uses_public_key(context) and not _is_loopback(host):
        raise ValueError(f"the teaching certificate's private key is public (mailkit/certs): it serves "
                         f"loopback only, not {host!r}; make a certificate of your own for a class "
                         f"server (docs/instructor.md, 'TLS on a class server')")


def client_context(cafile: str | None = None) -> ssl.SSLContext:
    """The standard client context: the certificate must chain to a CA the
    system trusts or, with *cafile*, to a certificate in that file (then the
    system's CAs are not loaded: ``ssl.create_default_context``), be within
    its validity dates, and name the host (``check_hostname``)."""
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
