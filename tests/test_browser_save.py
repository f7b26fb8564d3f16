"""Open every course notebook in JupyterLab (chromium), save it with Lab's
own command, and compare the file with the committed one: a student who
opens and saves a notebook must change no byte that git tracks.
(tests/test_course_path.py checks the same offline with mailkit.course.tidy;
this is the real JupyterLab.)"""

from __future__ import annotations

import os

import pytest

from browser_support import (
    NOTEBOOK_RUN_S,
    ROOT,
    STEP_S,
    NotebookInLab,
    chromium_path,
    launch_chromium,
    start_lab,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")) + [ROOT / "index.ipynb"]


@pytest.fixture(scope="module")
def lab_page(tmp_path_factory):
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("playwright is missing but CI=true")
        pytest.skip("playwright not installed")
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing but CI=true")
        pytest.skip("chromium not installed")
    tmp = tmp_path_factory.mktemp("save-lab")
    lab, _ = start_lab(tmp, tuple(p for p in COURSE if p.parent.name == "notebooks"), expose_app=True)
    served = tmp / "notebooks"
    (served / "index.ipynb").write_bytes((ROOT / "index.ipynb").read_bytes())
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p, executable)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(STEP_S * 1000)
            expect.set_options(timeout=STEP_S * 1000)
            yield lab, page, expect, served
            browser.close()
    finally:
        lab.stop()


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_opening_and_saving_in_jupyterlab_changes_no_byte(lab_page, path):
    lab, page, expect, served = lab_page
    notebook = NotebookInLab(page, expect).open(lab.url(path.name))
    notebook.command("docmanager:save")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                           timeout=NOTEBOOK_RUN_S * 1000)
    saved = (served / path.name).read_bytes()
    assert saved == path.read_bytes(), f"JupyterLab rewrote {path.name} on save"
    # one kernel at a time (Lab's close-and-shutdown command would ask first)
    page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
    page.evaluate("() => { window.jupyterapp.commands.execute('application:close-all'); }")
