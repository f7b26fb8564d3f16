"""The 2017 habits put back on purpose, to watch them fail (notebook 03).

:class:`Server2017Style` is the faithful 2017 server double
(:class:`mailkit.course_legacy2017.Server2017`): one session at a time, one
``recv(1024)`` per request, the checksum split off at the FIRST ``#``, the
login connection held open, the 2017 reply texts.  A teaching device only:
mailkit's :class:`~mailkit.server.MailServer` has none of these habits.
:func:`parse_2017` (splitting a frame at the first ``#``) lives in
:mod:`mailkit.protocol`, where the forms find it too.
"""

from __future__ import annotations

from ..course_legacy2017 import Server2017Style  # the one 2017 double
from ..protocol import parse_2017

__all__ = ["parse_2017", "Server2017Style"]
