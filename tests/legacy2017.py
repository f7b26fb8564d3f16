"""The 2017 client and server doubles the tests share: ONE of each, in
:mod:`mailkit.course.legacy2017` (they behave as the real 2017 code did on
the wire: see the last section of PROTOCOL.md)."""

from mailkit.course.legacy2017 import Client2017, Mail2017, Server2017, parse_2017, sha1

__all__ = ["Client2017", "Mail2017", "Server2017", "parse_2017", "sha1"]
