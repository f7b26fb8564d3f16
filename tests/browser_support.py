"""Helpers and fixtures for the browser tests (tests/test_browser*.py): start
JupyterLab or Voila on a free port in a throw-away Jupyter home, drive
Debian's chromium with playwright, and talk to a MailClientApp on the page
through its CSS classes.

The browser tests are split into several files so that ``make test``
(pytest-xdist, one file per work unit) runs them on several workers at once;
each file that needs JupyterLab starts its own (``course_lab``, a module
fixture), and each test file imports the fixtures below by name.

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

import pytest

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


# -- fixtures: the browser, a page, screenshots, the course in JupyterLab ------------------------

IN_CI = os.environ.get("CI", "").lower() == "true"
VIEWPORT = {"width": 1400, "height": 1400}


def _missing(what: str, hint: str):
    if IN_CI:
        pytest.fail(f"{what} is missing but CI=true, where the browser tests must run: {hint}")
    pytest.skip(f"{what} not installed: {hint} (runs in CI)")


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("playwright (python)", "pip install -e '.[test]'")
    return sync_playwright, expect


@pytest.fixture(scope="module")
def browser(playwright_api):
    executable = chromium_path()
    if executable is None:
        _missing("chromium", "apt-get install chromium")
    sync_playwright, _ = playwright_api
    with sync_playwright() as p:
        chromium = launch_chromium(p, executable)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, playwright_api):
    _, expect = playwright_api
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(STEP_S * 1000)
    expect.set_options(timeout=STEP_S * 1000)
    yield page
    context.close()


@pytest.fixture
def shoot(page):
    """shoot(name, locator=None): a PNG in test-artifacts/, of the page or one element."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    taken = []

    def take(name: str, locator=None):
        path = ARTIFACTS / f"{name}.png"
        (locator or page).screenshot(path=str(path))
        taken.append(path)
        return path

    take.taken = taken
    return take


@pytest.fixture(scope="module")
def course_lab(tmp_path_factory):
    """One JupyterLab serving what `make lab` serves (the home page, every
    notebook, the docs, the labs' student versions), with its settings: the
    client notebook, the forms and the home page are opened in it, each
    test in a fresh page and workspace (starting Lab is the slow part)."""
    lab, _ = start_lab(tmp_path_factory.mktemp("course-lab"), home=True, expose_app=True)
    yield lab
    lab.stop()



# -- the story both the JupyterLab and the Voila test play ---------------------------------------

def play_the_story(page, expect, shoot, prefix: str) -> None:
    """The flow both tests share: the same clicks in Lab and in Voila."""
    apps = page.locator(".mailkit-app")
    expect(apps).to_have_count(2, timeout=NOTEBOOK_RUN_S * 1000)
    both = page.locator(".widget-hbox:has(> .mailkit-app)")
    alice, bob = AppOnPage(apps.nth(0), expect), AppOnPage(apps.nth(1), expect)
    expect(alice["mailkit-login-server"].locator("input")).to_have_value(re.compile(r"127\.0\.0\.1:\d+"))

    # alice logs in with the form and writes to bob, twice
    alice.log_in("alice", "wonderland")
    alice.status("ok", "Logged in as alice")
    expect(alice["mailkit-count"]).to_have_text("0 messages")
    shoot(f"{prefix}-01-alice-logged-in", both)
    alice.compose("bob", "Lunch?", "Noon at the cafe?")
    alice.status("ok", "Sent to bob: the server said 'OK: Email Sent'.")
    alice.compose("bob", "Slides", "Here are the slides for Friday.")
    alice.status("ok", "Sent to bob")
    shoot(f"{prefix}-02-alice-sent", both)

    # bob logs in: both mails are in his inbox; he reads one and deletes it
    bob.log_in("bob", "builder")
    bob.status("ok", "Logged in as bob")
    expect(bob["mailkit-count"]).to_have_text("2 messages")
    expect(bob["mailkit-inbox"].locator("option")).to_have_count(2)
    assert any("Lunch?" in label for label in bob.inbox_labels())
    bob.select_message("Lunch?")
    expect(bob["mailkit-message"]).to_contain_text("Noon at the cafe?")
    expect(bob["mailkit-message"]).to_contain_text("From: alice")
    shoot(f"{prefix}-03-bob-inbox", both)
    bob["mailkit-delete"].click()
    bob.status("ok", "Deleted 1 message from alice with subject 'Lunch?'")
    expect(bob["mailkit-count"]).to_have_text("1 message")
    expect(bob["mailkit-inbox"].locator("option")).to_have_count(1)
    assert not any("Lunch?" in label for label in bob.inbox_labels())
    shoot(f"{prefix}-04-bob-deleted", both)

    # bob turns the noise up: frames get flipped bits, KO, and the client retries
    bob.tab("Transcript")
    expect(bob["mailkit-frames"]).to_contain_text("delmsg")
    bob.set_noise(0.6)                       # seed 0: the count needs three attempts
    bob["mailkit-refresh"].click()
    bob.status("ok", "Inbox refreshed: 1 message.")
    frames = bob["mailkit-frames"]
    expect(frames).to_contain_text(re.compile(r"#1 count +\d+ B -> KO +flipped bit"))
    expect(frames).to_contain_text(re.compile(r"#2 count"))
    expect(frames).to_contain_text(re.compile(r"(content hashes to|sha1 now) [0-9a-f]{40}"))
    expect(bob["mailkit-diagram"]).to_contain_text("KO")
    expect(bob["mailkit-tabs"].locator(".lm-TabBar-tab", has_text="Transcript")).to_contain_text(
        re.compile(r"Transcript \(\d+\)"))
    shoot(f"{prefix}-05-bob-noise-retries", both)

    # alice logs off and tries a wrong password: a sentence, not a traceback
    alice["mailkit-logoff"].click()
    alice.status("ok", "Logged off alice")
    expect(alice["mailkit-login-button"]).to_be_visible()
    alice.log_in("alice", "not-her-password")
    message = alice.status("error", "Login refused: wrong username or password")
    assert "Traceback" not in message
    expect(alice["mailkit-login-button"]).to_be_enabled()
    shoot(f"{prefix}-06-alice-wrong-password", both)
    assert "Traceback" not in page.inner_text("body")
    assert len(shoot.taken) >= 6 and all(p.stat().st_size > 5000 for p in shoot.taken)


# -- the course's forms in JupyterLab -----------------------------------------------------------

def form_class(make: str, *args, css_class: str) -> None:
    """The form ``mailkit.forms.<make>(*args)`` carries the CSS class the
    browser finds it by (checked in Python first: without it, there is no
    point starting JupyterLab)."""
    from mailkit import forms

    form = getattr(forms, make)(*args)
    try:
        assert css_class in form._dom_classes, f"{type(form).__name__} has no CSS class {css_class!r}"
    finally:
        form.close()


def open_notebook(course_lab, page, expect, name: str, form_snippet: str) -> tuple[NotebookInLab, int]:
    notebook = NotebookInLab(page, expect).open(course_lab.url(f"notebooks/{name}"))
    notebook.clear_outputs()              # no saved outputs to mistake for fresh ones
    return notebook, notebook.cell_index(form_snippet)


def form_field(form, page, label: str):
    """The input of the form's field labelled *label*."""
    return form.locator(".widget-inline-hbox").filter(
        has=page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$"))
    ).locator("input, textarea").first


def form_log_in(form, page, expect, password: str, says: str | re.Pattern) -> None:
    form_field(form, page, "user").fill("alice")
    form_field(form, page, "password").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(form.locator(".mailkit-form-result")).to_contain_text(says)


def shown_text(area, expect, wanted: str) -> str:
    """The text an output area shows, pictures included: JupyterLab shows an
    SVG as an <img> with a data: URL, whose text is read from the SVG itself."""
    from urllib.parse import unquote
    import base64

    def text() -> str:
        parts = [area.inner_text()]
        for src in area.locator("img").evaluate_all("imgs => imgs.map(i => i.src)"):
            head, _, data = src.partition(",")
            if head.startswith("data:image/svg+xml"):
                svg = base64.b64decode(data).decode() if head.endswith(";base64") else unquote(data)
                parts.append(re.sub(r"<[^>]+>", " ", svg))
        return "\n".join(parts)

    deadline = time.monotonic() + STEP_S
    while wanted not in (shown := text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert wanted in shown, f"{wanted!r} is not shown; the area shows:\n{shown}"
    return shown


def no_traceback(page) -> None:
    assert "Traceback" not in page.inner_text("body")


def slide(form, page, label: str, value: str, expect) -> None:
    """Move the slider labelled *label*: type its value into its readout, as a user can."""
    readout = form.locator(".widget-inline-hbox").filter(
        has=page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$"))
    ).locator(".widget-readout").first
    readout.click()
    readout.press("Control+a")
    readout.type(value)
    readout.press("Enter")
    expect(readout).to_have_text(value)
