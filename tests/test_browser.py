"""The mail-client notebook and the course's home page in a real browser, in
JupyterLab: the first of the browser tests, which are split over several files
so that `make test` (one file per pytest-xdist work unit) runs them side by
side, each file with its own JupyterLab or Voila:

- this file: notebooks/06-mail-client.ipynb in JupyterLab, and `make lab`'s
  home page (index.ipynb) reaching a notebook, a lab and a doc;
- test_browser_voila.py: the same client as a Voila page, and a closed tab's
  kernel culled;
- test_browser_forms_02_04.py, test_browser_forms_03_07.py: the forms of
  notebooks 02, 03, 04 and 07;
- test_browser_save.py: every notebook opened and saved by JupyterLab
  unchanged.

JupyterLab (a module fixture, ``course_lab`` in tests/browser_support.py)
serves a copy of what `make lab` serves, in a throw-away Jupyter home, on a
free port; each test opens its notebook in headless chromium driven by
playwright, in a fresh page and workspace.  The client story, the same in
Lab and in Voila (``play_the_story``): alice logs in and writes to bob; bob
logs in, reads the mail, deletes one, watches his count fall; bob turns the
noise up and sees KO and retries in his transcript; alice logs off and fails
to log in with a wrong password.  Screenshots go to test-artifacts/
(lab-*.png, voila-*.png, forms-*.png, home-*.png).

Needs Debian's chromium (`apt-get install chromium`; playwright's own
browsers are never downloaded).  Without it the tests skip, except under
CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import time

import pytest

from browser_support import (
    NOTEBOOK_RUN_S, NotebookInLab, play_the_story,
)
from browser_support import browser, course_lab, page, playwright_api, shoot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_client_notebook_in_jupyterlab(page, playwright_api, shoot, course_lab):
    _, expect = playwright_api
    started = time.monotonic()
    lab, url = course_lab, course_lab.url("notebooks/06-mail-client.ipynb")
    try:
        page.goto(url)
        expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=NOTEBOOK_RUN_S * 1000)
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached(
            timeout=NOTEBOOK_RUN_S * 1000)
        expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle").first).to_be_visible(
            timeout=NOTEBOOK_RUN_S * 1000)
        page.locator("li.lm-MenuBar-item", has_text="Run").click()
        page.locator("li[data-command='runmenu:run-all']").click()
        expect(page.locator(".mailkit-app")).to_have_count(2, timeout=NOTEBOOK_RUN_S * 1000)
        page.wait_for_function(
            "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];"
            " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }",
            timeout=NOTEBOOK_RUN_S * 1000)
        expect(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
               ).to_have_count(0)
        shoot("lab-00-notebook-run")
        page.locator(".jp-SideBar .lm-TabBar-tab[data-id='filebrowser']").click()   # more room for the apps
        play_the_story(page, expect, shoot, "lab")
        # still nothing on stderr, and no traceback, in any cell after all the clicks
        expect(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
               ).to_have_count(0)
    except Exception:
        print(lab.log_tail())
        raise
    print(f"JupyterLab flow took {time.monotonic() - started:.1f} s")



def test_the_course_home_reaches_notebooks_labs_and_docs(page, playwright_api, shoot, course_lab):
    """`make lab` opens index.ipynb: a click opens a notebook, a lab's student
    version (no solution in it) and a doc (rendered, not as source)."""
    _, expect = playwright_api
    lab, url = course_lab, course_lab.url("index.ipynb")
    try:
        notebook = NotebookInLab(page, expect).open(url)
        expect(page.locator(".jp-RenderedMarkdown h1", has_text="a networking course")).to_be_visible()
        shoot("home-00-index")
        home_tab = page.locator(".lm-TabBar-tab", has_text="index.ipynb").first
        for link, tab in (("02 · The handshake", "02-handshake.ipynb"),
                          ("Lab 1 · Handshake client", "01-handshake-client.ipynb"),
                          ("The protocol", "protocol.md")):
            home_tab.click()
            page.locator(".jp-RenderedMarkdown a", has_text=link).first.click()
            expect(page.locator(".lm-TabBar-tab.jp-mod-current", has_text=tab)).to_be_visible()
            if tab.endswith(".ipynb"):
                notebook.wait_until_loaded()
                sources = "\n".join(c["source"] for c in notebook.state()["cells"])
                assert sources and "BEGIN SOLUTION" not in sources
            else:
                expect(page.locator(".jp-RenderedMarkdown h1", has_text="The mail protocol")).to_be_visible()
            shoot(f"home-{tab.split('.')[0]}")
    except Exception:
        print(lab.log_tail())
        raise
