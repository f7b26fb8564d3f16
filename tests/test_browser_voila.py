"""The mail-client notebook as a Voila page (what `make app` serves), in
headless chromium: the client story of tests/test_browser.py, and a closed
tab's kernel culled by voila.json's culler.  Each test starts its own Voila
on a free port.  See tests/test_browser.py for the browser tests' files."""

from __future__ import annotations

import re
import time

import pytest

from browser_support import (
    NOTEBOOK_RUN_S, ROOT, STEP_S, VIEWPORT, AppOnPage, play_the_story, start_voila,
)
from browser_support import browser, page, playwright_api, shoot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
