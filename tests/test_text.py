"""mailkit.text: the plural and the clipped line every module shares."""

import ast
from pathlib import Path

import pytest

from mailkit.text import clip, plural


@pytest.mark.parametrize("n, word, expected", [
    (0, "message", "0 messages"), (1, "message", "1 message"), (2, "message", "2 messages"),
    (1, "attempt", "1 attempt"), (4, "attempt", "4 attempts"),
])
def test_plural(n, word, expected):
    assert plural(n, word) == expected


def test_plural_without_the_count():
    assert plural(1, "bit", count=False) == "bit"
    assert plural(2, "bit", count=False) == "bits"


@pytest.mark.parametrize("text, n, expected", [
    ("short", 10, "short"),
    ("exactly10!", 10, "exactly10!"),
    ("eleven char", 10, "eleven ch…"),
    ("two\nlines", 20, "two\\nlines"),           # one line: the newline shows as \n
    ("cr\r\nlf", 20, "cr\\r\\nlf"),
    ("a\nb", 3, "a\\…"),                          # counted after the newline is shown
])
def test_clip(text, n, expected):
    assert clip(text, n) == expected
    assert len(clip(text, n)) <= n


def test_text_is_the_lowest_layer():
    """protocol may import mailkit.text, so mailkit.text imports nothing of mailkit."""
    tree = ast.parse(Path(__file__).resolve().parent.parent.joinpath("mailkit", "text.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)
