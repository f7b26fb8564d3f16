"""The mail-client notebook and the course's forms in a real browser:
JupyterLab, then Voila.

The JupyterLab tests share one JupyterLab on a free port serving a copy of
what `make lab` serves (a throw-away Jupyter home); each Voila test starts
its own Voila on a copy of notebooks/06-mail-client.ipynb.  Each opens its
notebook in headless chromium driven by playwright, in a fresh page and
workspace, and plays the same story with the mouse and keyboard:
alice logs in and writes to bob; bob logs in, reads the mail, deletes one,
watches his count fall; bob turns the noise up and sees KO and retries in his
transcript; alice logs off and fails to log in with a wrong password.
Then the forms of notebooks 02-04 in JupyterLab, each used twice: after
running the notebook down to the form, and again after Run All (when the
later cells have run, and stopped their servers).
Screenshots go to test-artifacts/ (lab-*.png, voila-*.png, forms-*.png).

Needs Debian's chromium (`apt-get install chromium`; playwright's own
browsers are never downloaded).  Without it the tests skip, except under
CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from browser_support import (
    ARTIFACTS, NOTEBOOK_RUN_S, ROOT, STEP_S, AppOnPage, NotebookInLab, chromium_path, launch_chromium, start_lab,
    start_voila,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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


def test_the_client_as_a_voila_page(page, playwright_api, shoot, tmp_path):
    _, expect = playwright_api
    started = time.monotonic()
    voila, url = start_voila(tmp_path)
    try:
        page.goto(url)
        expect(page.locator(".mailkit-app")).to_have_count(2, timeout=NOTEBOOK_RUN_S * 1000)
        expect(page.locator("h1", has_text="06 · A mail client")).to_be_visible()
        assert "notebook" not in page.title().lower() and "notebook" not in page.locator("h1").first.inner_text()
        expect(page.get_by_text('MailClientApp(user="alice")')).to_have_count(0)     # no code shown
        # only what a web user needs: no notebook-only text, no raw reprs, the page's real address
        link = page.locator(f"a[href='{url}']")
        expect(link).to_have_text(url)
        expect(page.get_by_text("This page:")).to_be_visible()
        body = page.inner_text("body")
        for notebook_only in ("Run All", "stop_all", "<MailServer", "MailServer(", "8866", "mail clients side by side",
                              "server.stop()", "python -m mailkit"):
            assert notebook_only not in body, f"{notebook_only!r} is on the Voila page"
        shoot("voila-00-page")
        play_the_story(page, expect, shoot, "voila")
    except Exception:
        print(voila.log_tail())
        raise
    finally:
        voila.stop()
    print(f"Voila flow took {time.monotonic() - started:.1f} s")


# Short culling times for the test (make app's voila.json: 120 s idle, checked every 30 s).
CULL_IDLE_S, CULL_INTERVAL_S = 3, 1


def _kernel_alive(port: int, kernel_id: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernels/{kernel_id}", timeout=10) as r:
            return r.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def test_a_closed_voila_tab_has_its_kernel_culled(browser, playwright_api, tmp_path):
    """A tab that goes away without a word (closed, crashed, a laptop lid shut:
    no beforeunload) leaves a kernel and a practice server behind; the culler
    of voila.json shuts it down once it is idle with no page connected, while
    an open page's kernel stays however long it sits idle."""
    import json as json_

    _, expect = playwright_api
    repo_config = json_.loads((ROOT / "voila.json").read_text())["MappingKernelManager"]
    assert repo_config["cull_idle_timeout"] > 0 and repo_config["cull_connected"] is False
    voila, url = start_voila(tmp_path, f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE_S}",
                             f"--MappingKernelManager.cull_interval={CULL_INTERVAL_S}")
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(STEP_S * 1000)
        page.goto(url)
        expect(page.locator(".mailkit-app")).to_have_count(2, timeout=NOTEBOOK_RUN_S * 1000)
        kernel_id = json_.loads(page.locator("#jupyter-config-data").text_content())["kernelId"]
        assert _kernel_alive(voila.port, kernel_id)

        # connected, idle for longer than the timeout, over several culler passes: kept
        time.sleep(CULL_IDLE_S + 3 * CULL_INTERVAL_S)
        assert _kernel_alive(voila.port, kernel_id)
        alice = AppOnPage(page.locator(".mailkit-app").nth(0), expect)
        alice.log_in("alice", "wonderland")
        alice.status("ok", "Logged in as alice")          # and still working

        page.close(run_before_unload=False)               # the tab is gone, without a goodbye
        deadline = time.monotonic() + CULL_IDLE_S + CULL_INTERVAL_S + STEP_S
        while _kernel_alive(voila.port, kernel_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _kernel_alive(voila.port, kernel_id), "the closed tab's kernel is still running"
        assert re.search(rf"Culling '\w+' kernel '[\w-]*' \({kernel_id}\) with 0 connections", voila.log_tail(80)), \
            voila.log_tail(20)
    except Exception:
        print(voila.log_tail())
        raise
    finally:
        context.close()
        voila.stop()


# -- the course's forms in JupyterLab ------------------------------------------------------------


@pytest.fixture(scope="module")
def course_lab(tmp_path_factory):
    """One JupyterLab serving what `make lab` serves (the home page, every
    notebook, the docs, the labs' student versions), with its settings: the
    client notebook, the forms and the home page are opened in it, each
    test in a fresh page and workspace (starting Lab is the slow part)."""
    lab, _ = start_lab(tmp_path_factory.mktemp("course-lab"), home=True, expose_app=True)
    yield lab
    lab.stop()


def _form_class(make: str, *args, css_class: str) -> None:
    """The form ``mailkit.forms.<make>(*args)`` carries the CSS class the
    browser finds it by (checked in Python first: without it, there is no
    point starting JupyterLab)."""
    from mailkit import forms

    form = getattr(forms, make)(*args)
    try:
        assert css_class in form._dom_classes, f"{type(form).__name__} has no CSS class {css_class!r}"
    finally:
        form.close()


def _open(course_lab, page, expect, name: str, form_snippet: str) -> tuple[NotebookInLab, int]:
    notebook = NotebookInLab(page, expect).open(course_lab.url(f"notebooks/{name}"))
    notebook.clear_outputs()              # no saved outputs to mistake for fresh ones
    return notebook, notebook.cell_index(form_snippet)


def _field(form, page, label: str):
    """The input of the form's field labelled *label*."""
    return form.locator(".widget-inline-hbox").filter(
        has=page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$"))
    ).locator("input, textarea").first


def _log_in(form, page, expect, password: str, says: str | re.Pattern) -> None:
    _field(form, page, "user").fill("alice")
    _field(form, page, "password").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(form.locator(".mailkit-form-result")).to_contain_text(says)


def _shown_text(area, expect, wanted: str) -> str:
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


def _no_traceback(page) -> None:
    assert "Traceback" not in page.inner_text("body")


def test_the_login_form_of_02_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    _form_class("login_form", ("127.0.0.1", 1), css_class="mailkit-login-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = _open(course_lab, page, expect, "02-handshake.ipynb", "login_form(")
        for when in ("run-to-the-form", "after-run-all"):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-login-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            _log_in(form, page, expect, "wonderland", re.compile(r"logged in: session id \d{10}"))
            expect(form.locator(".mailkit-form-result")).to_contain_text("OK:")
            shoot(f"forms-02-login-right-{when}", form)
            _log_in(form, page, expect, "wonderlnad", "login refused")
            expect(form.locator(".mailkit-form-result")).not_to_contain_text("logged in")
            shoot(f"forms-02-login-wrong-{when}", form)
            _no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise


def test_the_frame_builder_of_03_in_jupyterlab(request, page, playwright_api, shoot):
    from mailkit import protocol

    _, expect = playwright_api
    _form_class("frame_builder", css_class="mailkit-frame-builder")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = _open(course_lab, page, expect, "03-checksum-framing.ipynb", "frame_builder(")
        for when, subject in (("run-to-the-form", "Room #5 at noon"), ("after-run-all", "#1 fan")):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            builder = page.locator(".mailkit-frame-builder")
            expect(builder).to_have_count(1)
            builder.scroll_into_view_if_needed()
            _field(builder, page, "subject").fill(subject)
            values = {name: _field(builder, page, name).input_value()
                      for name in ("session id", "recipient", "subject", "body")}
            assert values["subject"] == subject
            frame = protocol.make_frame(values["session id"], "email", values["recipient"], subject, values["body"])
            checksum = frame.rpartition(b"#")[2].decode()            # the SHA-1 the builder must show
            result = builder.locator(".mailkit-form-result")
            expect(result).to_contain_text(checksum)
            expect(result).to_contain_text("answers KO")              # a 2017 parser stops at the first '#'
            shoot(f"forms-03-frame-builder-hash-{when}", builder)
            _no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise


def test_the_noise_form_of_04_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    _form_class("noise_form", ("127.0.0.1", 1), "alice", "wonderland", "bob", css_class="mailkit-noise-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = _open(course_lab, page, expect, "04-bit-flips-and-retry.ipynb", "noise_form(")
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
            _field(form, page, "seed").fill("1")
            _field(form, page, "seed").press("Enter")
            form.get_by_role("button", name="Send").click()
            # rate 0.40, seed 1: two damaged frames, KO twice, the third attempt goes through
            diagram = _shown_text(form.locator(".mailkit-form-result"), expect, "delivered after 3 attempts")
            assert re.search(r"KO.*KO", diagram, re.S) and "rate 0.40" in diagram, diagram
            shoot(f"forms-04-noise-retry-{when}", form)
            _no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise


def _slide(form, page, label: str, value: str, expect) -> None:
    """Move the slider labelled *label*: type its value into its readout, as a user can."""
    readout = form.locator(".widget-inline-hbox").filter(
        has=page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$"))
    ).locator(".widget-readout").first
    readout.click()
    readout.press("Control+a")
    readout.type(value)
    readout.press("Enter")
    expect(readout).to_have_text(value)


def test_the_pipeline_form_of_07_in_jupyterlab(request, page, playwright_api, shoot):
    _, expect = playwright_api
    _form_class("pipeline_form", css_class="mailkit-pipeline-form")
    course_lab = request.getfixturevalue("course_lab")
    try:
        notebook, cell = _open(course_lab, page, expect, "07-silence-timers-rtt-pipelining.ipynb",
                               "pipeline_form(")
        for when, window in (("run-to-the-form", "8"), ("after-run-all", "2")):
            if when == "run-to-the-form":
                notebook.run_through(cell)
            else:
                notebook.run_all()
            form = page.locator(".mailkit-pipeline-form")
            expect(form).to_have_count(1)
            form.scroll_into_view_if_needed()
            _slide(form, page, "loss", "0.20", expect)
            _slide(form, page, "window", window, expect)
            form.get_by_role("button", name="Run").click()
            result = form.locator(".mailkit-form-result")
            # the virtual clock: the same settings give the same numbers as in Python
            from mailkit.forms import pipeline_form
            want = repr(pipeline_form().run_with(loss=0.2, window=int(window))).splitlines()
            for line in want:
                expect(result).to_contain_text(line)
            shoot(f"forms-07-pipeline-{when}", form)
            _no_traceback(page)
    except Exception:
        print(course_lab.log_tail())
        raise


# -- make lab's home page -----------------------------------------------------------------------

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
