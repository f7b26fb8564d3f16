"""The output masks nbval applies before comparing a student's outputs with
the reference.

They live in one file, ``mailkit/labs/nbval-sanitize.cfg``, shipped in the
package: ``make test`` hands it to nbval for the course's notebooks
(``tests/nbval-sanitize.cfg`` links to it) and this module reads it for the
labs, so the two can never drift apart.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

__all__ = ["SANITIZE_CFG", "patterns", "sanitize", "write_sanitize_file", "canonical"]

# nbval's format: each `regex: ` line directly followed by its `replace: ` line.
SANITIZE_CFG = files(__package__).joinpath("nbval-sanitize.cfg").read_text(encoding="utf-8")


def patterns(text: str = SANITIZE_CFG) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of a sanitize file, read as nbval reads them."""
    return re.findall("^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)


def sanitize(text: str) -> str:
    """*text* masked as nbval masks outputs before comparing them."""
    for regex, replace in patterns():
        text = re.sub(regex, replace, text)
    return text


def write_sanitize_file(path: str | Path) -> Path:
    """Write the sanitize file to *path* (for an nbval run in a scratch directory)."""
    path = Path(path)
    path.write_text(SANITIZE_CFG.strip() + "\n", encoding="utf-8")
    return path


def canonical(outputs: list[dict]) -> str:
    """Outputs as the text a student reads: streams joined (a cell that
    prints line by line may produce one output or several, the text is the
    same), results as their text/plain, errors as their last line."""
    parts, kinds = [], []
    for out in outputs or ():
        kind = out.get("output_type")
        if kind == "stream":
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if out.get("name") == "stderr":
                continue        # warnings vary with versions; checks print to stdout
            parts.append(text)
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {}).get("text/plain", "")
            parts.append(("".join(data) if isinstance(data, list) else data) + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return "".join(parts)
