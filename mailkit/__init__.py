"""mailkit: a teaching kit for networking, built around one small mail protocol.

The core (everything imported here) uses the standard library only:

* :mod:`mailkit.protocol` - frames, checksums, parsing; no sockets
* :mod:`mailkit.store` - accounts, sessions and mail in SQLite
* :mod:`mailkit.responder` - :class:`MailResponder`: one request in, one reply out
* :mod:`mailkit.simple_server` - :class:`SimpleMailServer`, the server to read
  (``socketserver``, a thread per connection)
* :mod:`mailkit.server` - :class:`MailServer`, the fast server for a class
  (an event loop, a worker pool, :mod:`mailkit.listener`)
* :mod:`mailkit.client` - :class:`MailClient`, which retries after ``KO``
* :mod:`mailkit.noise` - :class:`BitFlipChannel` and the :class:`NoisyLink` relay
* :mod:`mailkit.trace` - transcripts and hexdumps students can read

Imported on their own, for notebooks:

* :mod:`mailkit.pictures` - SVG sequence diagrams, coloured hexdumps (stdlib),
  and the retry plot (matplotlib)
* :mod:`mailkit.forms` - the course's small ipywidgets forms
* :mod:`mailkit.course` - helpers the course notebooks call
* :mod:`mailkit.widgets` - ``MailClientApp``, a whole mail client (ipywidgets)
* :mod:`mailkit.labs` - releasing, checking and grading labs
* :mod:`mailkit.conform` - conformance checks for any server or client,
  in any language (``python -m mailkit conform``)
"""

import logging

from .client import (
    LoginFailed, MailClient, MailClientError, NoReply, NotLoggedIn, RetriesExhausted,
    ServerError, ServerUnreachable, UnexpectedReply,
)
from .noise import BitFlipChannel, NoisyLink, flip_bit
from .protocol import (
    COMMANDS, ChecksumMismatch, Command, Handshake, Message, ProtocolError, Reply,
    checksum, make_frame, make_handshake, parse_reply, parse_request,
)
from .responder import MailResponder
from .server import REPLIES, MailServer, PortInUseError
from .simple_server import SimpleMailServer
from .store import MailStore
from .trace import Exchange, Transcript, hexdump

__version__ = "0.1.0"

__all__ = [
    "MailServer", "SimpleMailServer", "MailResponder", "MailClient", "MailStore", "BitFlipChannel", "NoisyLink",
    "Transcript", "Exchange", "Message", "Command", "Handshake", "Reply", "REPLIES",
    "COMMANDS", "checksum", "make_frame", "make_handshake", "parse_request", "parse_reply",
    "flip_bit", "hexdump",
    "ProtocolError", "ChecksumMismatch", "MailClientError", "ServerError", "LoginFailed",
    "NotLoggedIn", "NoReply", "RetriesExhausted", "ServerUnreachable", "UnexpectedReply", "PortInUseError",
]

# A library logs, it does not print: without this handler Python's "last
# resort" would write warnings from server threads into a notebook's cells.
logging.getLogger("mailkit").addHandler(logging.NullHandler())
