"""The page at ``GET /`` in a real browser: headless Chromium (Debian's package) driven by Playwright.

Playwright only drives the installed browser (``executable_path``); it never
downloads one. Where Chromium is missing the test is skipped, except in CI
(``CI=true``), where it fails: the README's test command installs it there.
"""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from ttsstack.runtime.clauses import ClauseBuffer
from ttsstack.serve import Limits, create_app

from .conftest import running_server

CHROMIUM = os.environ.get("TTSSTACK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
TEXT = "Hello there, this page streams speech. Every word is timed."


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium, launched once for the module with a fresh profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[test]')")
    if CHROMIUM is None:
        _missing("Chromium is not installed (Debian: apt-get install chromium; or set TTSSTACK_CHROMIUM)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 900, "height": 640},
        )
        yield context
        context.close()


def _missing(message: str) -> None:
    """Skip, or fail in CI, where the README's test command installs the browser and its driver."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}: the browser test must run in CI")
    pytest.skip(message)


def test_page_is_served_by_the_server_itself(tiny_voice):
    with running_server(create_app([tiny_voice], Limits())) as url:
        page = httpx.get(f"{url}/")
        script = httpx.get(f"{url}/static/page.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    assert '<script src="/static/page.js">' in page.text


def test_page_streams_speech_in_chromium(browser, tiny_voice, tmp_path):
    problems: list[str] = []
    with running_server(create_app([tiny_voice], Limits())) as url:
        page = browser.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('status').textContent === 'ready'", timeout=30_000)
        assert page.input_value("#model") == "tiny"
        page.fill("#text", TEXT)
        page.check("#as-written")  # word by word: the text-as-written path of the WebSocket
        page.click("#speak")
        page.wait_for_function("/^\\d+ ms$/.test(document.getElementById('first-audio').textContent)", timeout=30_000)
        page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('#spoken span.spoken').length >= 3", timeout=30_000)
        seconds = float(page.text_content("#audio-seconds").split()[0])
        page.screenshot(path=str(tmp_path / "page.png"))
        page.close()
    buffer = ClauseBuffer()
    clauses = [*buffer.feed(TEXT), buffer.flush()]
    expected = sum(len(tiny_voice.synthesize_audio(c.text)) for c in clauses) / tiny_voice.sample_rate
    assert abs(seconds - expected) < 0.01
    assert not problems, problems
    assert (tmp_path / "page.png").stat().st_size > 0
