"""Notebook 09's congestion form in a real browser (JupyterLab, Debian's
chromium through playwright), used twice: after running the notebook down
to the form, and again after Run All.  The simulation runs on a virtual
clock, so what the form shows is what Python computes for the same
settings, line by line.  Screenshots: test-artifacts/forms-09-*.png."""

from __future__ import annotations

import pytest

from browser_support import form_class, no_traceback, open_notebook, slide
from browser_support import browser, course_lab, page, playwright_api, shoot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_congestion_form_of_09_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    form_class("congestion_form", css_class="mailkit-congestion-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = open_notebook(course_lab, page, expect, "09-congestion-and-flow-control.ipynb",
                               "congestion_form()")
        for when, queue, second in (("run-to-the-form", "30", "Reno"), ("after-run-all", "4", "fixed window of 32")):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-congestion-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            slide(form, page, "queue (seg)", queue, expect)
            form.locator("select").select_option(second)
            form.get_by_role("button", name="Run").click()
            result = form.locator(".mailkit-form-result")
            from mailkit.forms import congestion_form
            want = repr(congestion_form().run_with(buffer=int(queue), second=second)).splitlines()
            for line in want:
                expect(result).to_contain_text(line.strip())
            expect(result.locator("img")).to_have_count(1)      # the picture beside the numbers
            shoot(f"forms-09-congestion-{when}", form)
            no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise
