"""The course's forms of notebooks 03 and 07 in JupyterLab (headless
chromium), each used twice: after running the notebook down to the form, and
again after Run All (when the later cells have run, and stopped their
servers).  One JupyterLab for the file (``course_lab``); the other forms are
in test_browser_forms_02_04.py, so that two workers share them.  See
tests/test_browser.py for the browser tests' files."""

from __future__ import annotations

import pytest

from browser_support import form_class, form_field, no_traceback, open_notebook, slide
from browser_support import browser, course_lab, page, playwright_api, shoot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_frame_builder_of_03_in_jupyterlab(request, page, playwright_api, shoot):
    from mailkit import protocol

    _, expect = playwright_api
    form_class("frame_builder", css_class="mailkit-frame-builder")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = open_notebook(course_lab, page, expect, "03-checksum-framing.ipynb", "frame_builder(")
        for when, subject in (("run-to-the-form", "Room #5 at noon"), ("after-run-all", "#1 fan")):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            builder = page.locator(".mailkit-frame-builder")
            expect(builder).to_have_count(1)
            builder.scroll_into_view_if_needed()
            form_field(builder, page, "subject").fill(subject)
            values = {name: form_field(builder, page, name).input_value()
                      for name in ("session id", "recipient", "subject", "body")}
            assert values["subject"] == subject
            frame = protocol.make_frame(values["session id"], "email", values["recipient"], subject, values["body"])
            checksum = frame.rpartition(b"#")[2].decode()            # the SHA-1 the builder must show
            result = builder.locator(".mailkit-form-result")
            expect(result).to_contain_text(checksum)
            expect(result).to_contain_text("answers KO")              # a 2017 parser stops at the first '#'
            shoot(f"forms-03-frame-builder-hash-{when}", builder)
            no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise


def test_the_pipeline_form_of_07_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    form_class("pipeline_form", css_class="mailkit-pipeline-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = open_notebook(course_lab, page, expect, "07-silence-timers-rtt-pipelining.ipynb",
                               "pipeline_form(")
        for when, window in (("run-to-the-form", "8"), ("after-run-all", "2")):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-pipeline-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            slide(form, page, "loss", "0.20", expect)
            slide(form, page, "window", window, expect)
            form.get_by_role("button", name="Run").click()
            result = form.locator(".mailkit-form-result")
            # the virtual clock: the same settings give the same numbers as in Python
            from mailkit.forms import pipeline_form
            want = repr(pipeline_form().run_with(loss=0.2, window=int(window))).splitlines()
            for line in want:
                expect(result).to_contain_text(line)
            shoot(f"forms-07-pipeline-{when}", form)
            no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise
