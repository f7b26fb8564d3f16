"""The conformance suite against examples/ (issue 22): the C server and client
and the bash client pass; the matrix and its SVG; the C SHA-1 gives the docs'
test vectors; every command docs/protocol.md shows runs as written.  No
timed assertions: only verdicts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import failing, PY, SERVE, WRONG_CLIENT, EXAMPLE_CLIENT
from mailkit.conform import (
    CHECKS, CLIENT_CHECKS, CommandTarget, run_client_suite, run_suite, text_report,
)
from mailkit.conform.matrix import matrix_text, run_matrix
from mailkit.course.legacy2017 import Server2017
from mailkit.pictures.matrix import matrix_svg

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(Path(__file__).parent))



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """examples/server.c and client.c built with the system gcc into a private folder."""
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is missing under CI=true (.ci/run installs it)")
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("examples")
    for name, extra in (("server", ["-pthread"]), ("client", [])):
        subprocess.run([gcc, "-O2", "-Wall", "-Werror", *extra, "-o", str(out / name),
                        str(ROOT / "examples" / f"{name}.c")], check=True, capture_output=True)
    return out


def test_the_c_server_passes_every_check(built):
    with CommandTarget([str(built / "server"), "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=6, strict=True)
    assert failing(suite) == set(), text_report(suite)


def test_the_c_client_passes_every_client_check(built):
    suite = run_client_suite([str(built / "client"), "{host}", "{port}"], seed=6, strict=True)
    assert failing(suite) == set(), text_report(suite)


@pytest.mark.slow      # a bash process per check, the silent server's budget included: ~16 s
def test_the_bash_client_passes_every_required_client_check():
    assert shutil.which("sha1sum") and shutil.which("timeout")
    suite = run_client_suite(["bash", str(ROOT / "examples" / "client.sh"), "{host}", "{port}"], seed=6)
    assert failing(suite) == set(), text_report(suite)


# -- the matrix ---------------------------------------------------------------------------


def test_the_matrix_shows_who_interoperates_and_draws_it(built, tmp_path):
    with Server2017({"alice": "wonderland", "bob": "builder"}) as old:
        result = run_matrix([SERVE, [str(built / "server"), "{port}", "{users}", "{db}"], old.address],
                            [EXAMPLE_CLIENT, [str(built / "client"), "{host}", "{port}"]],
                            users={"alice": "wonderland", "bob": "builder"}, seed=5, mails=3, budget=15)
    assert len(result.cells) == 3 and all(len(row) == 2 for row in result.cells)
    assert [[c.status for c in row] for row in result.cells] == [["ok", "ok"]] * 3, matrix_text(result)
    text = matrix_text(result)
    assert "C1 = " in text and "3/3" in text
    svg = ET.fromstring(matrix_svg(result.rows, result.cols, result.cells))
    rects = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(rects) == 6


def test_the_matrix_marks_a_client_that_sends_mail_twice_as_broken():
    result = run_matrix([SERVE], [[*WRONG_CLIENT, "sends-email-twice", "{host}", "{port}"]],
                        users={"alice": "wonderland", "bob": "builder"}, seed=5, mails=2, budget=15)
    [[cell]] = result.cells
    copies = [int(n) for n in re.search(r"copies per mail \[([\d, ]+)\]", cell.detail).group(1).split(",")]
    assert cell.status == "broken" and max(copies) == 2        # a second copy (the link may damage one)



# -- docs/protocol.md says what the suite does ----------------------------------------------


DOCS = (ROOT / "docs" / "protocol.md").read_text()


def test_the_docs_list_every_check_with_its_level_and_section():
    rows = re.findall(r"^\| `([a-z]+/[A-Za-z0-9-]+)` \| (required|SHOULD) \| ([^|]+) \|", DOCS, re.M)
    listed = {name: (level, section.strip()) for name, level, section in rows}
    every = {**CHECKS, **CLIENT_CHECKS}
    assert set(listed) == set(every)
    for name, c in every.items():
        assert listed[name] == ("required" if c.required else "SHOULD", c.section), name


def test_the_c_sha1_gives_the_docs_test_vectors(built, tmp_path):
    main = tmp_path / "vectors.c"
    main.write_text('#include "sha1.h"\n#include <stdio.h>\n'
                    'int main(void) { static char buf[1 << 20]; size_t n = fread(buf, 1, sizeof buf, stdin);\n'
                    '  char hex[41]; sha1_hex(buf, n, hex); puts(hex); return 0; }\n')
    subprocess.run(["gcc", "-O2", "-I", str(ROOT / "examples"), "-o", str(tmp_path / "vectors"), str(main)],
                   check=True)
    section = DOCS.split("### SHA-1 test vectors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]*)` \| \d+ \| `([0-9a-f]{40})` \|$", section, re.M)
    assert len(rows) == 6
    for content, digest in [*rows, ("x" * 100_000, hashlib.sha1(b"x" * 100_000).hexdigest()),
                            ("y" * 55, hashlib.sha1(b"y" * 55).hexdigest()),      # padding edges
                            ("z" * 56, hashlib.sha1(b"z" * 56).hexdigest()),
                            ("", hashlib.sha1(b"").hexdigest())]:
        got = subprocess.run([str(tmp_path / "vectors")], input=content.encode(), capture_output=True, check=True)
        assert got.stdout.decode().strip() == digest, content[:20]


@pytest.mark.slow      # every command of the conformance docs, compilers included: ~60 s on 2 busy cores
def test_the_commands_the_docs_show_run_as_written(built, tmp_path):
    """The conformance section's commands, verbatim, from a copy of the
    repository's examples/ (gcc writes its binaries there)."""
    block = DOCS.split("## Conformance: checking any server or client", 1)[1].split("```sh\n", 1)[1]
    commands = block.split("```", 1)[0].strip().splitlines()
    assert len(commands) == 9
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in commands:
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, f"{command}\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"
    svg = ET.parse(tmp_path / "matrix.svg").getroot()
    assert svg.tag.endswith("svg")
