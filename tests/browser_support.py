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
import time
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


def jupyter_env(home: Path) -> dict[str, str]:
    """Environment variables that keep Jupyter inside *home*, with the lab
    settings above written there."""
    dirs = {name: home / sub for name, sub in (
        ("HOME", "home"), ("IPYTHONDIR", "ipython"), ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"))}
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


def copy_notebook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(NOTEBOOK, folder / NOTEBOOK.name))


class Served:
    """A Jupyter server (Lab or Voila) in a subprocess, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, port: int):
        self.name, self.port, self.log = name, port, log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     cwd=env["HOME"], start_new_session=True)

    def wait_until_listening(self, path: str = "", timeout: float = SERVER_START_S) -> None:
        """Wait until the port accepts a connection (and *path* answers 200, if given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if path:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                        if r.status == 200:
                            return
                else:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log_file.close()


def start_lab(tmp: Path) -> tuple[Served, str]:
    """JupyterLab on a free port serving a copy of the notebook; returns the
    server and the URL that opens the notebook (token included)."""
    env = jupyter_env(tmp)
    notebook = copy_notebook(tmp / "notebooks")
    port, token = free_port(), secrets.token_hex(16)
    args = [sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook.parent}"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    lab = Served("JupyterLab", args, env, tmp / "jupyterlab.log", port)
    lab.wait_until_listening(f"/api/status?token={token}")
    return lab, f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}&reset"


def start_voila(tmp: Path, *options: str) -> tuple[Served, str]:
    """Voila on a free port serving a copy of the notebook, with the
    repository's voila.json (what `make app` uses: notebook-only cells
    removed, idle kernels of closed tabs culled); *options* override it."""
    env = jupyter_env(tmp)
    notebook = copy_notebook(tmp / "notebooks")
    port = free_port()
    voila = Path(sys.executable).with_name("voila")
    args = [str(voila) if voila.exists() else "voila", "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", f"--Voila.config_file_paths={ROOT}", *options, str(notebook)]
    served = Served("Voila", args, env, tmp / "voila.log", port)
    served.wait_until_listening()
    return served, f"http://127.0.0.1:{port}/"


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
