"""The course's forms of notebooks 02 and 04 in JupyterLab (headless
chromium), each used twice: after running the notebook down to the form, and
again after Run All (when the later cells have run, and stopped their
servers).  One JupyterLab for the file (``course_lab``); the other forms are
in test_browser_forms_03_07.py, so that two workers share them.  See
tests/test_browser.py for the browser tests' files."""

from __future__ import annotations

import re

import pytest

from browser_support import form_class, form_field, form_log_in, no_traceback, open_notebook, shown_text
from browser_support import browser, course_lab, page, playwright_api, shoot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_login_form_of_02_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    form_class("login_form", ("127.0.0.1", 1), css_class="mailkit-login-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = open_notebook(course_lab, page, expect, "02-handshake.ipynb", "login_form(")
        for when in ("run-to-the-form", "after-run-all"):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-login-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            form_log_in(form, page, expect, "wonderland", re.compile(r"logged in: session id \d{10}"))
            expect(form.locator(".mailkit-form-result")).to_contain_text("OK:")
            shoot(f"forms-02-login-right-{when}", form)
            form_log_in(form, page, expect, "wonderlnad", "login refused")
            expect(form.locator(".mailkit-form-result")).not_to_contain_text("logged in")
            shoot(f"forms-02-login-wrong-{when}", form)
            no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise


def test_the_noise_form_of_04_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    form_class("noise_form", ("127.0.0.1", 1), "alice", "wonderland", "bob", css_class="mailkit-noise-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = open_notebook(course_lab, page, expect, "04-bit-flips-and-retry.ipynb", "noise_form(")
        for when in ("run-to-the-form", "after-run-all"):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-noise-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            readout = form.locator(".widget-readout")         # move the slider: type its value, as a user can
            readout.click()
            readout.press("Control+a")
            readout.type("0.40")
            readout.press("Enter")
            expect(readout).to_have_text("0.40")
            form_field(form, page, "seed").fill("1")
            form_field(form, page, "seed").press("Enter")
            form.get_by_role("button", name="Send").click()
            # rate 0.40, seed 1: two damaged frames, KO twice, the third attempt goes through
            diagram = shown_text(form.locator(".mailkit-form-result"), expect, "delivered after 3 attempts")
            assert re.search(r"KO.*KO", diagram, re.S) and "rate 0.40" in diagram, diagram
            shoot(f"forms-04-noise-retry-{when}", form)
            no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise
