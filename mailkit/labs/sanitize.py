"""The output masks nbval applies before comparing a student's outputs with
the reference: the same pairs as ``tests/nbval-sanitize.cfg`` (which
``make test`` uses on the source notebooks), copied here so that the
installed package has them; tests/test_labs.py checks that the two agree.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SANITIZE_CFG", "patterns", "sanitize", "write_sanitize_file"]

# A copy of tests/nbval-sanitize.cfg (nbval's format: each `regex: ` line
# directly followed by its `replace: ` line).
SANITIZE_CFG = r"""
# nbval masks these in notebook outputs before comparing them (make test).
# Each `regex: ` line must be followed directly by its `replace: ` line, one
# space after each colon; other lines are ignored. Mask only what varies run
# to run; tests/test_packaging.py checks that every pair is read.

# Ports the OS picks (port 0), next to the loopback address or after "port".
regex: 127\.0\.0\.1:\d+\b
replace: 127.0.0.1:PORT
regex: \('127\.0\.0\.1', \d+\)
replace: ('127.0.0.1', PORT)
regex: \b([Pp]ort) \d{4,5}\b
replace: \1 PORT

# Dates and times, with optional fraction and zone.
regex: \d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( UTC|Z|[+-]\d{2}:\d{2})?
replace: TIME

# Session ids: ten digits.
regex: \b\d{10}\b
replace: SESSIONID

# Durations in milliseconds.
regex: \b\d+(\.\d+)? ms\b
replace: N ms
"""


def patterns(text: str = SANITIZE_CFG) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of a sanitize file, read as nbval reads them."""
    return re.findall("^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)


def sanitize(text: str) -> str:
    """*text* masked as nbval masks outputs before comparing them."""
    for regex, replace in patterns():
        text = re.sub(regex, replace, text)
    return text


def write_sanitize_file(path: str | Path) -> Path:
    path = Path(path)
    path.write_text(SANITIZE_CFG.strip() + "\n", encoding="utf-8")
    return path
