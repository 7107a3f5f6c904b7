"""Every link to the API a page shows, and every request to it the browser makes, is taken: the
routes now answer 400 to a parameter they do not declare (tests/test_api_unknown_parameters.py), so
a page that wrote one into its JSON or CSV link, or a player that added one to its audio URL, would
break. In headless Chromium against the real CLI (`sde demo`), on every page of the navbar and the
inspector."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.browser_kit import TIMEOUT_MS, Watch

pytestmark = pytest.mark.browser

PAGES = ["/", "/samples", "/vocabulary", "/errors", "/comparison", "/problems", "/duplicates", "/tts", "/rules",
         "/utterance/0"]
API = ("/api/", "/audio/")


def refusal(url: str) -> str | None:
    """The error of an unknown-parameter answer to GET `url`, or None for any other answer."""
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            answer.read()
            return None
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.code != 400 or not e.headers.get("Content-Type", "").startswith("application/json"):
            return None
        said = json.loads(body)
        return said["error"] if "unknown" in said else None


@pytest.mark.parametrize("path", PAGES)
def test_the_api_links_and_requests_of_a_page_take_their_parameters(page, demo, path):
    watch = Watch(page, demo)
    asked: list[str] = []
    refused: list[str] = []

    def on_response(response) -> None:
        if response.url.startswith(tuple(demo + p for p in API)):
            asked.append(response.url)
            if response.status == 400 and "unknown parameter" in response.text():
                refused.append(response.url)

    page.on("response", on_response)
    page.goto(demo + path)
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS * 4)
    links = page.eval_on_selector_all(
        "a[href^='/api/'], a[href^='/audio/'], [src^='/api/'], [src^='/audio/']",
        "els => els.map(e => e.getAttribute('href') || e.getAttribute('src'))")
    assert links, f"{path} shows no link to the API: the selector no longer finds them"
    assert refused == [], refused
    for link in sorted(set(links)):
        said = refusal(demo + link)
        assert said is None, f"{path} links to {link}: {said}"
    watch.check()
