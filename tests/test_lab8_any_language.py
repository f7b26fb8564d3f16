"""Issue 22, item 5: lab 8, "your server, any language", graded by the real
``python -m mailkit.labs grade`` as docs/instructor.md writes it (relative
paths, from the folder holding ``submissions/`` and ``labs/``).

One class is graded once (a module fixture) and each student is asserted
on: the Python and C reference servers earn full marks; each wrong server
of tests/wrong_servers.py loses the points of the check named for its
flaw; hostile submissions (links, a run script that writes outside its
scratch, one that forges results) earn nothing they did not earn on the
wire, and leave no marker on the host.

Grading runs sandboxed: these tests need root, bubblewrap and gcc (CI
installs them: .ci/run)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailkit.labs import sandbox
from mailkit.labs.reading import MAX_TREE_FILES, lab_folder
from mailkit.labs.serverlab import load_server_lab

ROOT = Path(__file__).resolve().parent.parent
LAB = "08-any-language-server"
SOURCE = load_server_lab(ROOT / "labs" / LAB)
MAX = f"{SOURCE.max_points:g}"
sys.path.insert(0, str(ROOT / "tests"))
from wrong_servers import FLAWS  # noqa: E402

WRONG = ["no-checksum-check", "reply-in-two-pieces", "predictable-session-ids", "crashes-on-hash-in-subject",
         "closes-before-resend", "duplicates-resent-mail", "one-client-at-a-time", "never-half-closes"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.available()), reason=f"no sandbox here: {sandbox.available()}")]


def python_server(folder: Path, flaw: str = "none", *, before: str = "") -> None:
    """A submission: tests/wrong_servers.py as server.py and a run script."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "wrong_servers.py", folder / "server.py")
    (folder / "run").write_text(f'#!/bin/sh\n{before}exec python3 server.py {flaw} "$1" "$2" "$3"\n')


def c_server(folder: Path) -> None:
    """examples/server.c with a Makefile (built in the sandbox with the system gcc)."""
    folder.mkdir(parents=True)
    for name in ("server.c", "sha1.h"):
        shutil.copy(ROOT / "examples" / name, folder / name)
    (folder / "Makefile").write_text("server: server.c sha1.h\n\tgcc -O2 -pthread -o server server.c\n"
                                     "run: server\n\t./server $(PORT) $(USERS) $(DB)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    here = tmp_path_factory.mktemp("lab8")
    shutil.copytree(ROOT / "labs" / LAB, here / "labs" / LAB)
    subs = here / "submissions"
    python_server(subs / "py-ref" / LAB)
    c_server(subs / "c-ref" / "08-my-server")          # the lab's number is enough
    for flaw in WRONG:
        python_server(subs / f"wrong-{flaw}" / LAB, flaw)
    markers = [here / "marker-host", Path("/tmp") / f"mailkit-lab8-marker-{os.getpid()}"]
    # Writes outside its scratch (the host's folders it was given a path to), then runs a correct server.
    python_server(subs / "writes-outside" / LAB, before="".join(
        f"echo ran > {m} 2>/dev/null\n" for m in markers) + f"echo ran > {subs}/py-ref/{LAB}/run 2>/dev/null\n")
    # Forges: pass lines on every descriptor and file it can reach, kills what it can, serves nothing.
    forge = subs / "forges" / LAB
    forge.mkdir(parents=True)
    line = json.dumps({"check": "login/ok", "status": "pass"})
    (forge / "lab.json").write_text(json.dumps({"lab": LAB, "checks": [{"check": "login/ok", "points": 1000}],
                                                "start": {"run": ["true"]}}))   # data, never a lab source
    (forge / "run").write_text(
        "#!/bin/sh\n"
        f"for fd in /proc/*/fd/* /dev/fd/*; do echo '{line}' > $fd; done 2>/dev/null\n"
        f"for f in /run/mailkit/* $HOME/*; do echo '{line}' >> $f; done 2>/dev/null\n"
        "kill -9 -1 2>/dev/null\n"
        f"echo '{line}'\nsleep 1\n")
    # Hands in mailkit's own server: the package is covered in the sandbox, and the row is flagged.
    kit = subs / "uses-kit" / LAB
    kit.mkdir(parents=True)
    (kit / "run").write_text('#!/bin/sh\nexec python3 -m mailkit serve --port "$1" --users-file "$2" --db "$3"\n')
    # Links: the run script and the server are links to a classmate's; a lab folder that is a link.
    linked = subs / "links" / LAB
    linked.mkdir(parents=True)
    (linked / "run").symlink_to(subs / "py-ref" / LAB / "run")
    (linked / "server.py").symlink_to(subs / "py-ref" / LAB / "server.py")
    (subs / "folder-link").mkdir()
    (subs / "folder-link" / LAB).symlink_to(subs / "py-ref" / LAB)
    before = {p: p.read_bytes() for p in (subs / "py-ref" / LAB).iterdir()}
    done = subprocess.run([sys.executable, "-m", "mailkit.labs", "grade", "submissions/", "--source", "labs/",
                           "--out", "gradebook.csv", "--feedback", "feedback/", "--canvas", "canvas.csv",
                           "--jobs", "4", "--quiet"], cwd=here, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["student"]: r for r in csv.DictReader(open(here / "gradebook.csv", encoding="utf-8"))}
    return {"rows": rows, "here": here, "markers": markers, "out": done.stdout + done.stderr,
            "untouched": all(p.read_bytes() == b for p, b in before.items())}


def failed(row: dict) -> set[str]:
    return {c.name for c in SOURCE.checks if row[f"{LAB}/{c.name}"] != str(c.points)}


@pytest.mark.parametrize("student", ["py-ref", "c-ref"])
def test_the_reference_servers_earn_full_marks_in_the_sandbox(graded, student):
    row = graded["rows"][student]
    assert (row["total"], row["max"], row["sandbox"]) == (MAX, MAX, "yes"), row["feedback"]
    assert failed(row) == set()


@pytest.mark.parametrize("flaw", WRONG)
def test_each_wrong_server_loses_the_points_of_its_named_check(graded, flaw):
    row = graded["rows"][f"wrong-{flaw}"]
    assert FLAWS[flaw] in failed(row), row["feedback"]
    assert float(row["total"]) < float(row["max"])
    assert FLAWS[flaw] in row["feedback"]          # the feedback names it


def test_a_run_script_that_writes_outside_its_scratch_writes_nothing_there(graded):
    assert not any(m.exists() for m in graded["markers"])
    assert graded["untouched"]                     # the classmate's folder is as it was
    assert graded["rows"]["writes-outside"]["total"] == MAX   # its server was right: nothing less, nothing more


def test_forged_results_earn_nothing(graded):
    row = graded["rows"]["forges"]
    assert (row["total"], row["max"], row["sandbox"]) == ("0", MAX, "yes")
    assert "did not start" in row["feedback"]
    assert graded["rows"]["py-ref"]["total"] == MAX   # its kill -9 -1 reached no one else


def test_mailkits_own_server_is_not_there_to_hand_in_and_is_flagged(graded):
    row = graded["rows"]["uses-kit"]
    assert (row["total"], row["sandbox"]) == ("0", "yes"), row["feedback"]
    assert "uses mailkit's code: run runs or imports mailkit" in row["flags"]
    assert graded["rows"]["py-ref"]["flags"] == ""     # its docstring names mailkit: not a use of it


def test_links_are_not_followed(graded):
    linked = graded["rows"]["links"]
    assert linked["total"] == "0" and "skipped: symlink run" in linked["feedback"]
    folder = graded["rows"]["folder-link"]
    assert folder["total"] == "0" and "symlink" in folder["feedback"]


def test_the_canvas_and_feedback_rows_are_written_for_lab_8(graded):
    here = graded["here"]
    canvas = list(csv.reader(open(here / "canvas.csv", encoding="utf-8")))
    assert SOURCE.title in canvas[0]
    assert (here / "feedback").is_dir() and any((here / "feedback").rglob("*"))


def test_a_folder_too_big_is_refused_unread(tmp_path):
    student = tmp_path / "s" / LAB
    student.mkdir(parents=True)
    for i in range(MAX_TREE_FILES + 1):
        (student / f"f{i}").write_text("x")
    rel, read = lab_folder(tmp_path, "s", SOURCE.folder_matches)
    assert rel == LAB and f"more than {MAX_TREE_FILES} files" in read.why


def test_the_command_the_lab_readme_shows_runs_as_written(tmp_path):
    """The student's own check, verbatim from labs/08-any-language-server/README.md,
    from a folder holding the Python reference."""
    readme = (ROOT / "labs" / LAB / "README.md").read_text(encoding="utf-8")
    command = next(line.strip() for line in readme.splitlines() if line.startswith("    python -m mailkit"))
    python_server(tmp_path / LAB)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path / LAB, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PATH=path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "durability/after-OK" in done.stdout
