"""A student's path through the course: the home page's command in the
terminal that `make lab` opens, notebooks that JupyterLab saves unchanged,
a course map that agrees with itself, and the small things a student sees."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mailkit.course.tidy import as_jupyterlab_saves

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
COURSE_FILES = NOTEBOOKS + [ROOT / "index.ipynb"] + sorted((ROOT / "labs").glob("[0-9][0-9]-*.ipynb"))


def cell(path: Path, cell_id: str) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    [c] = [c for c in nb["cells"] if c.get("id") == cell_id]
    return "".join(c["source"])


# -- opening and saving a notebook changes no tracked byte --------------------

@pytest.mark.parametrize("path", COURSE_FILES, ids=lambda p: p.name)
def test_each_committed_notebook_is_as_jupyterlab_saves_it(path):
    text = path.read_text(encoding="utf-8")
    assert as_jupyterlab_saves(text) == text, (
        f"{path.name}: JupyterLab would rewrite it on save; run "
        f"`.venv/bin/python -m mailkit.course.tidy {path.relative_to(ROOT)}`")


def test_the_labs_student_versions_are_as_jupyterlab_saves_them(tmp_path):
    """What `make lab` writes to assignments/ (the notebooks students open
    and save) is, byte for byte, what JupyterLab would save."""
    from mailkit.labs.releasing import release
    written = release(sorted((ROOT / "labs").glob("[0-9][0-9]-*.ipynb")), tmp_path, check=False)
    assert written
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert as_jupyterlab_saves(text) == text, path.name


def test_tidy_does_what_jupyterlab_does():
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["widgets"] = {"state": {"slider": {"min": 0.0, "max": 1.0, "step": 0.05}}}
    code = nbformat.v4.new_code_cell("print(1); print(2)")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="2\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="!\n")]
    nb.cells = [code]
    saved = json.loads(as_jupyterlab_saves(nbformat.writes(nb)))
    assert saved["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    slider = saved["metadata"]["widgets"]["state"]["slider"]
    assert slider == {"min": 0, "max": 1, "step": 0.05} and isinstance(slider["min"], int)
    assert [(o["name"], "".join(o["text"])) for o in saved["cells"][0]["outputs"]] == [
        ("stdout", "1\n2\n"), ("stderr", "!\n")]


# -- the home page's command, in the terminal that `make lab` opens -----------

def home_page_command() -> str:
    [line] = [line.strip() for line in cell(ROOT / "index.ipynb", "home-labs").splitlines()
              if line.startswith("    python -m mailkit.labs check")]
    return line


def jupyter_port(psutil, lab: subprocess.Popen) -> int:
    """The port the Jupyter server under *lab* (make) listens on.  Asked until
    it shows: on a loaded machine the URL can be printed a moment before the
    listening socket is seen among the children (the first full run with four
    workers found none).  A kernel's ZeroMQ ports are not the server's."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and lab.poll() is None:
        ports = {c.laddr.port
                 for p in psutil.Process(lab.pid).children(recursive=True)
                 if "jupyter" in _cmdline(psutil, p) and "lab" in _cmdline(psutil, p)
                 for c in _listening(psutil, p)}
        if len(ports) == 1:
            return ports.pop()
        time.sleep(0.2)
    pytest.fail(f"make lab's Jupyter server never showed one listening port (exit {lab.poll()})")


def _cmdline(psutil, process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _listening(psutil, process) -> list:
    try:
        return [c for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


@pytest.mark.slow      # `make lab` starts JupyterLab and a terminal: 20-65 s on 2 busy cores
def test_the_home_pages_check_command_runs_in_a_make_lab_terminal(tmp_path):
    websocket = pytest.importorskip("websocket")
    token = secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    # What a student's machine has: the usual PATH, no virtual environment active.
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(ROOT / ".venv")))
    lab = subprocess.Popen(
        ["make", "--no-print-directory", "lab",
         f"LAB_ARGS=--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=0 "
         f"--IdentityProvider.token={token}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        seen = []
        for line in lab.stdout:
            seen.append(line)
            if re.search(r"http://127\.0\.0\.1:\d+/", line):
                break
        else:
            pytest.fail("make lab did not start:\n" + "".join(seen))
        # With port 0 the address Jupyter prints is not the one it bound: ask
        # the kernel which port the server (make's child) listens on.
        psutil = pytest.importorskip("psutil")
        port = jupyter_port(psutil, lab)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/terminals?token={token}",
                                         data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        name = json.load(urllib.request.urlopen(request, timeout=60))["name"]
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/terminals/websocket/{name}?token={token}", timeout=300)
        command = home_page_command()
        ws.send(json.dumps(["stdin", command + "\r"]))
        ws.send(json.dumps(["stdin", "echo THE-END-$((6*7))\r"]))
        out = ""
        while "THE-END-42" not in out:
            kind, *data = json.loads(ws.recv())
            if kind == "stdout":
                out += data[0]
        ws.close()
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(60)
    assert "ModuleNotFoundError" not in out, out
    assert "Lab 1: Handshake client" in out and "score: 0/5 points" in out, out


# -- the course map agrees with itself ----------------------------------------

def times_in_table(text: str, link: str) -> dict:
    rows = re.findall(r"^\| \[(\d\d) · [^\]]*\]\(" + link + r"[^)]*\) \|.*\| ([^|]+) \|$", text, re.M)
    return {n: t.strip() for n, t in rows}


def test_the_time_estimates_agree_everywhere():
    home = times_in_table(cell(ROOT / "index.ipynb", "home-course"), "notebooks/")
    course_map = times_in_table((ROOT / "notebooks" / "README.md").read_text(encoding="utf-8"), "")
    assert list(home) == [p.name[:2] for p in NOTEBOOKS]       # every notebook, in order
    assert home == course_map
    for path in NOTEBOOKS:
        stated = re.search(r"\*About ([\d–]+) minutes", cell(path, json.loads(
            path.read_text(encoding="utf-8"))["cells"][0]["id"]))
        if stated:
            assert f"{stated.group(1)} min" == home[path.name[:2]], path.name
    assert home["07"] == "60–75 min"
    low = sum(int(re.match(r"\d+", t).group()) for t in home.values())
    high = sum(int(re.findall(r"\d+", t)[-1]) for t in home.values())
    assert 8.25 <= low / 60 and high / 60 <= 8.75          # "about eight and a half hours"
    for text in (cell(ROOT / "index.ipynb", "home-course"),
                 (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8"),
                 (ROOT / "README.md").read_text(encoding="utf-8")):
        assert "eight and a half hours" in text
    guide = (ROOT / "docs" / "instructor.md").read_text(encoding="utf-8")
    assert re.search(r"## Notebook 07 in class[^\n]*\n\nAbout 60–75 minutes", guide)


def test_quickstarts_where_next_lists_every_notebook():
    text = cell(ROOT / "notebooks" / "00-quickstart.ipynb", "79618082")
    assert re.findall(r"^\| (\d\d) · ", text, re.M) == [p.name[:2] for p in NOTEBOOKS[1:]]


# -- the small things ---------------------------------------------------------

def test_menu_items_the_course_names_exist_in_this_jupyterlab():
    static = ROOT / ".venv" / "share" / "jupyter" / "lab" / "static"
    if not static.is_dir():
        static = Path(sys.prefix) / "share" / "jupyter" / "lab" / "static"
    bundle = "".join(p.read_text(encoding="utf-8", errors="replace") for p in static.glob("*.js"))
    texts = [p.read_text(encoding="utf-8") for p in
             [ROOT / "index.ipynb", *NOTEBOOKS, *sorted((ROOT / "labs").glob("*.ipynb"))]]
    named = set()
    for text in texts:
        for path in re.findall(r"\*((?:File|Edit|View|Run|Kernel) ▸ [^*]+)\*", text):
            named.add(path.split(" ▸ ")[-1].strip())
        named.update(re.findall(r"Kernel → (.+?…)", text))       # the labs' wording
    assert "Restart Kernel and Run All Cells…" in named and "Shut Down All Kernels…" in named
    for item in named:
        assert f'"{item}"' in bundle, f"JupyterLab has no menu item {item!r}"
    assert not any("Restart & Run All" in t for t in texts)


def test_the_throughput_legend_covers_no_point():
    from mailkit.course.timers import throughput_plot
    fig = throughput_plot(range(1, 11), loss=0.1, seed=1).figure()
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    points = [tuple(p) for line in ax.get_lines() for p in ax.transData.transform(line.get_xydata())]
    assert len(points) == 40
    assert not [p for p in points if box.contains(*p)]


def test_the_not_allowed_message_of_08_comes_in_short_lines():
    from mailkit.course_tcp import NOT_ALLOWED
    assert "CAP_NET_RAW" in NOT_ALLOWED
    assert all(len(line) <= 64 for line in NOT_ALLOWED.splitlines())


def test_the_mail_client_page_is_not_called_a_notebook():
    path = ROOT / "notebooks" / "06-mail-client.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    heading = "".join(nb["cells"][0]["source"]).splitlines()[0]
    assert heading == "# 06 · A mail client"
    assert "notebook" not in nb["metadata"]["title"].lower()


def test_the_home_page_says_how_to_shut_kernels_down():
    text = cell(ROOT / "index.ipynb", "home-course")
    assert "Close and Shut Down Notebook…" in text and "Shut Down All Kernels…" in text
