"""Notebook 10's form in a real browser (JupyterLab, Debian's chromium):
the tap form, used twice, after running the notebook down to the form and
again after Run All (when the later cells have run and stopped their servers).

Without TLS the form must show the password crossing in clear; with the TLS
box ticked, TLS records only.  Screenshots go to test-artifacts/forms-10-*.png.
Reuses tests/browser_support.py; skips without chromium, except under CI=true.
"""

from __future__ import annotations

import re

import pytest

from browser_support import ARTIFACTS, NotebookInLab, start_lab
from browser_support import browser, page, playwright_api  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NOTEBOOK = "10-checksum-mac-tls.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from browser_support import ROOT

    served, _ = start_lab(tmp_path_factory.mktemp("lab10"), (ROOT / "notebooks" / NOTEBOOK,), expose_app=True)
    yield served
    served.stop()


def test_the_form_is_findable_by_its_css_classes():
    """Checked in Python first: without them, there is no point starting JupyterLab."""
    from mailkit.course.security import PathForm

    form = PathForm({"alice": "wonderland"})
    try:
        assert "mailkit-path-form" in form.widget._dom_classes
        for part in ("user", "password", "tls", "send", "result"):
            assert f"mailkit-path-{part}" in getattr(form, part if part != "send" else "send")._dom_classes
        view = form.run("alice", "wonderland", tls=False)
        assert view.leaked and "in clear: alice:wonderland" in view.text
        view = form.run("alice", "wonderland", tls=True)
        assert not view.leaked and "TLS records: handshake" in view.text
    finally:
        form.widget.close()


def test_the_tap_form_of_10_in_jupyterlab(lab, page, playwright_api):
    _, expect = playwright_api
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        notebook = NotebookInLab(page, expect).open(lab.url(NOTEBOOK))
        notebook.clear_outputs()              # no saved outputs to mistake for fresh ones
        cell = notebook.cell_index("PathForm(users)")
        for when in ("run-to-the-form", "after-run-all"):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-path-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            result = form.locator(".mailkit-path-result")
            tls = form.locator(".mailkit-path-tls input")

            # without TLS: the password crosses in clear
            if tls.is_checked():
                tls.uncheck()
            form.locator(".mailkit-path-password input").fill("wonderland")
            form.locator(".mailkit-path-send button, button.mailkit-path-send").first.click()
            expect(result).to_contain_text("the password crossed in clear")
            expect(result).to_contain_text("in clear: alice:wonderland")
            expect(result).to_contain_text("without TLS: logged in")
            form.screenshot(path=str(ARTIFACTS / f"forms-10-clear-{when}.png"))

            # with TLS: records only; a wrong password is hidden just the same
            tls.check()
            form.locator(".mailkit-path-password input").fill("not-the-password")
            form.locator(".mailkit-path-send button, button.mailkit-path-send").first.click()
            expect(result).to_contain_text("the password is not in the bytes")
            expect(result).to_contain_text(re.compile(r"TLS records: handshake \d+"))
            expect(result).to_contain_text("with TLS: the server said: KO")
            expect(result).not_to_contain_text("not-the-password")
            form.screenshot(path=str(ARTIFACTS / f"forms-10-tls-{when}.png"))
            assert "Traceback" not in page.inner_text("body")
    except Exception:
        print(lab.log_tail())
        raise
