"""Helpers for tests/test_browser.py: start JupyterLab or Voila on a free port
in a throw-away Jupyter home, drive Debian's chromium with playwright, and
talk to a MailClientApp on the page through its CSS classes.

Nothing here touches the repository's notebooks: the tests serve a copy, and
every Jupyter directory (settings, runtime files, workspaces) lives in a
temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "06-mail-client.ipynb"
ARTIFACTS = Path(os.environ.get("MAILKIT_TEST_ARTIFACTS", ROOT / "test-artifacts"))

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Headless, and quiet: without network the browser's own background traffic
# (updates, sync, QUIC probes) only fills the log with refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]
SERVER_START_S = 90      # JupyterLab's first start builds its settings cache; 2 busy cores are slow
STEP_S = 30              # one step of the flow (a click and what it shows), in seconds
NOTEBOOK_RUN_S = 90      # Run All, kernel start included

# JupyterLab user settings for the test's throw-away home: no news pop-up,
# no update check, and no autosave (so Lab never rewrites a notebook).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def chromium_path() -> str | None:
    explicit = os.environ.get("MAILKIT_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_TRIES = 3      # Jupyter and Voila take a port number, not a socket: another test may take it first


def serve_on_a_free_port(start):
    """``start(port)`` -> a started :class:`Served`, on a port free a moment
    ago.  Jupyter binds it itself, so a port taken in between (by another
    test's connection, beside it) makes it exit: then try another port."""
    for attempt in range(1, PORT_TRIES + 1):
        port = free_port()
        try:
            return start(port)
        except PortTaken:
            if attempt == PORT_TRIES:
                raise


class PortTaken(RuntimeError):
    """The server exited because its port was taken before it could bind it."""


# The kernels talk to the server over Unix sockets (ZeroMQ's ipc transport),
# not TCP: over TCP jupyter_client picks five free ports and the kernel binds
# them a moment later, and a port taken in between (by another test, beside
# it) left a kernel that never started ("Address already in use").  An ipc
# socket is a file in the server's own runtime folder: nobody else can take it.
KERNEL_TRANSPORT = ["--KernelManager.transport=ipc"]


def short_runtime_dir() -> Path:
    """A private runtime folder with a short path: a kernel's ipc sockets are
    files in it named kernel-<uuid>-ipc-<n>, and a Unix socket's path has at
    most 107 bytes (unix(7)), too few under pytest's temporary folders."""
    return Path(tempfile.mkdtemp(prefix="mk-rt-"))


def jupyter_env(home: Path) -> dict[str, str]:
    """Environment variables that keep Jupyter inside *home* (its runtime
    files in a private folder of :func:`short_runtime_dir`), with the lab
    settings above written there."""
    dirs = {name: home / sub for name, sub in (
        ("HOME", "home"), ("IPYTHONDIR", "ipython"), ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"))}
    dirs["JUPYTER_RUNTIME_DIR"] = short_runtime_dir()
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings"
    for name, values in LAB_SETTINGS.items():
        target = settings / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(dirs["JUPYTER_CONFIG_DIR"] / "lab" / "workspaces")
    env.pop("MAILKIT_SERVER", None)         # the notebook must start its own server
    env["PYTHONUNBUFFERED"] = "1"
    return env


def copy_notebook(folder: Path, notebook: Path = NOTEBOOK) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(notebook, folder / notebook.name))


class Served:
    """A Jupyter server (Lab or Voila) in a subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, port: int):
        self.name, self.port, self.log = name, port, log
        self.runtime_dir = Path(env["JUPYTER_RUNTIME_DIR"])
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     cwd=env["HOME"], start_new_session=True)

    def wait_until_listening(self, path: str, timeout: float = SERVER_START_S, *, statuses=(200,)) -> None:
        """Wait until *path* answers with one of *statuses*: the server's own
        answer (a port that merely accepts connections may be another's)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "already in use" in tail:
                    self._log_file.close()
                    raise PortTaken(f"{self.name}: port {self.port} was taken:\n{tail}")
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                    status = r.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            if status in statuses:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL if it
        hangs; then its private runtime folder goes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log_file.close()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def course_home(folder: Path) -> Path:
    """What `make lab` serves, in *folder*: index.ipynb, notebooks/, docs/,
    and the labs' student versions in assignments/ (no solutions)."""
    from mailkit.labs.releasing import release

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "index.ipynb", folder / "index.ipynb")
    shutil.copytree(ROOT / "notebooks", folder / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "docs", folder / "docs")
    release([ROOT / "labs"], folder / "assignments", check=False)
    return folder


def start_lab(tmp: Path, notebooks: tuple[Path, ...] = (NOTEBOOK,), *,
              expose_app: bool = False, home: bool = False) -> tuple[Served, str]:
    """JupyterLab on a free port serving copies of *notebooks*; returns the
    server and the URL that opens the first (token included); ``lab.url(name)``
    opens another.  *expose_app* makes ``window.jupyterapp`` available, so a
    test can run Lab's own commands (the ones its menus run).  With *home*,
    it serves what `make lab` serves (see :func:`course_home`) with the same
    settings (jupyter/overrides.json), and the URL opens index.ipynb."""
    env = jupyter_env(tmp)
    if home:
        root = course_home(tmp / "course")
        copies = [root / "index.ipynb"]
    else:
        copies = [copy_notebook(tmp / "notebooks", notebook) for notebook in notebooks]
    token = secrets.token_hex(16)
    args = [sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={copies[0].parent}", *KERNEL_TRANSPORT]
    if home:
        app_settings = tmp / "app-settings"
        app_settings.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "jupyter" / "overrides.json", app_settings / "overrides.json")
        args.append(f"--LabApp.app_settings_dir={app_settings}")
    if expose_app:
        args.append("--LabApp.expose_app_in_browser=True")
    if os.geteuid() == 0:
        args.append("--allow-root")

    def start(port: int) -> Served:
        lab = Served("JupyterLab", [*args, f"--ServerApp.port={port}"], env, tmp / "jupyterlab.log", port)
        lab.url = lambda name: f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}&reset"
        lab.wait_until_listening(f"/api/status?token={token}")
        return lab

    lab = serve_on_a_free_port(start)
    return lab, lab.url(copies[0].name)


def start_voila(tmp: Path, *options: str) -> tuple[Served, str]:
    """Voila on a free port serving a copy of the notebook, with the
    repository's voila.json (what `make app` uses: notebook-only cells
    removed, idle kernels of closed tabs culled); *options* override it."""
    env = jupyter_env(tmp)
    notebook = copy_notebook(tmp / "notebooks")
    voila = Path(sys.executable).with_name("voila")

    def start(port: int) -> Served:
        args = [str(voila) if voila.exists() else "voila", "--no-browser", f"--port={port}", "--Voila.port_retries=0",
                "--Voila.ip=127.0.0.1", f"--Voila.config_file_paths={ROOT}", *KERNEL_TRANSPORT, *options,
                str(notebook)]
        served = Served("Voila", args, env, tmp / "voila.log", port)
        # Voila has no status page: its refusal to serve this path as a file is its answer
        served.wait_until_listening("/api/kernels", statuses=(200, 403))
        return served

    served = serve_on_a_free_port(start)
    return served, f"http://127.0.0.1:{served.port}/"


def launch_chromium(playwright, executable: str):
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


# -- the app on the page ------------------------------------------------------------------------

class AppOnPage:
    """One MailClientApp in the browser, found and driven by its CSS classes."""

    def __init__(self, root, expect):
        self.root, self.expect = root, expect      # a playwright Locator, playwright's expect

    def __getitem__(self, css_class: str):
        return self.root.locator(f".{css_class}")

    def status(self, kind: str, text: str | re.Pattern, timeout: float = STEP_S):
        """Wait until the status line is *kind* (ok, error, busy, info) and shows *text*."""
        status = self["mailkit-status"]
        self.expect(status).to_have_class(re.compile(rf"\bmailkit-status-{kind}\b"), timeout=timeout * 1000)
        self.expect(status).to_contain_text(text, timeout=timeout * 1000)
        self.expect(self.root).to_have_class(re.compile(r"\bmailkit-idle\b"), timeout=timeout * 1000)
        return status.inner_text()

    def log_in(self, user: str, password: str) -> None:
        self["mailkit-login-user"].locator("input").fill(user)
        self["mailkit-login-password"].locator("input").fill(password)
        self["mailkit-login-button"].click()

    def tab(self, title: str) -> None:
        self["mailkit-tabs"].locator(".lm-TabBar-tab", has_text=title).first.click()

    def compose(self, to: str, subject: str, body: str) -> None:
        self.tab("Compose")
        self["mailkit-compose-to"].locator("input").fill(to)
        self["mailkit-compose-subject"].locator("input").fill(subject)
        self["mailkit-compose-body"].locator("textarea").fill(body)
        self["mailkit-send"].click()

    def inbox_labels(self) -> list[str]:
        return self["mailkit-inbox"].locator("option").all_inner_texts()

    def select_message(self, label_part: str) -> None:
        select = self["mailkit-inbox"].locator("select")
        labels = self.inbox_labels()
        index = next(i for i, label in enumerate(labels) if label_part in label)
        select.select_option(index=index)

    def set_noise(self, value: float) -> None:
        """Type the value into the slider's readout, as a user can."""
        readout = self["mailkit-noise"].locator(".widget-readout")
        readout.click()
        readout.press("Control+a")
        readout.type(f"{value:.2f}")
        readout.press("Enter")
        self.expect(readout).to_have_text(f"{value:.2f}")
        # ...and the kernel has it: a click sent now could otherwise overtake the
        # slider's new value (ipywidgets holds back value updates while busy).
        self.expect(self["mailkit-noise-note"]).to_contain_text(f"noise {value:.2f}")


# -- a notebook in JupyterLab --------------------------------------------------------------------

# The notebook in the current tab, read from Lab's own model (cells out of view may not be in the DOM).
_NOTEBOOK_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
  const kernel = panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map(c => ({
    type: c.model.type,
    source: c.model.sharedModel.getSource(),
    count: c.model.type === 'code' ? c.model.executionCount : null,
    error: c.model.type === 'code' && c.model.outputs.toJSON().some(o => o.output_type === 'error'),
    raised: c.model.type === 'code' ? c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                        .map(o => o.ename + ': ' + o.evalue).join('; ') : '',
  }));
  return {kernel: kernel ? kernel.status : 'none', cells};
}"""


class NotebookInLab:
    """The notebook open in the page, run with JupyterLab's own commands."""

    def __init__(self, page, expect):
        self.page, self.expect = page, expect

    def open(self, url: str) -> "NotebookInLab":
        self.page.goto(url)
        self.expect(self.page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=NOTEBOOK_RUN_S * 1000)
        self.page.wait_for_function(f"() => {{ const s = ({_NOTEBOOK_STATE_JS})(); return s && s.kernel === 'idle'; }}",
                                    timeout=NOTEBOOK_RUN_S * 1000)
        return self

    def wait_until_loaded(self) -> None:
        """Until the notebook in the current tab has its cells and a kernel."""
        self.page.wait_for_function(f"() => {{ const s = ({_NOTEBOOK_STATE_JS})(); return s && s.cells.length > 0; }}",
                                    timeout=NOTEBOOK_RUN_S * 1000)

    def state(self) -> dict:
        return self.page.evaluate(_NOTEBOOK_STATE_JS)

    def command(self, name: str, args: dict | None = None) -> None:
        self.page.evaluate("([name, args]) => window.jupyterapp.commands.execute(name, args || {})", [name, args])

    def cell_index(self, snippet: str) -> int:
        """The first code cell whose source contains *snippet*."""
        cells = self.state()["cells"]
        found = [i for i, c in enumerate(cells) if c["type"] == "code" and snippet in c["source"]]
        assert found, f"no code cell contains {snippet!r}"
        return found[0]

    def clear_outputs(self) -> None:
        self.command("notebook:clear-all-cell-outputs")

    def run_through(self, index: int) -> None:
        """Run every cell from the top down to cell *index*, as Run ▸ Run All
        Above Selected Cell does with the cell after it selected."""
        self.page.evaluate("i => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }", index + 1)
        self.command("notebook:run-all-above")
        self._wait(f"s.cells.slice(0, {index + 1}).every(c => c.type !== 'code' || c.count !== null)")

    def run_all(self) -> None:
        """Run ▸ Run All Cells, from the menu, and wait until every cell ran."""
        self.page.locator("li.lm-MenuBar-item", has_text="Run").click()
        self.page.locator("li[data-command='runmenu:run-all']").click()
        self._wait("s.cells.every(c => c.type !== 'code' || c.count !== null)")

    def _wait(self, done: str) -> None:
        self.page.wait_for_function(
            "() => { const s = (" + _NOTEBOOK_STATE_JS + ")();"
            " return s && (s.cells.some(c => c.error) || (s.kernel === 'idle' && " + done + ")); }",
            timeout=NOTEBOOK_RUN_S * 1000)
        broken = [(c["source"][:80], c["raised"]) for c in self.state()["cells"] if c["error"]]
        assert not broken, f"a cell raised an error (its source, what it raised): {broken}"
