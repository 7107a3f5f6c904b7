"""The TTS page's speech job shows a progress bar that a screen reader finds by name: one progressbar
in Chromium's accessibility tree (dbc.Progress's own bar, which takes no aria-label, is hidden from
it), named, whose value follows the bar while the job measures. Headless Chromium against the real
server, with a real Measure job on espeak-ng speech, cancelled once it has shown its progress."""

from __future__ import annotations


import pytest

from tests.browser_kit import Watch, sde_server
from tests.quality_kit import long_recording_manifest

pytestmark = pytest.mark.browser

NAME = "Speech measurement progress"
SEGMENTS = 400  # a job long enough to show its progress before it ends
SEGMENT_S = 2.0
# A job process reading 400 segments on a loaded 2-core machine: a bound for a stuck one, not a speed test.
DEADLINE_MS = 180_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """SEGMENTS speech segments of one long espeak recording (tests.quality_kit), served."""
    manifest = long_recording_manifest(tmp_path_factory.mktemp("job-progress"), SEGMENTS, SEGMENT_S)
    folder = manifest.parent
    with sde_server(str(manifest), cwd=folder) as url:
        yield url


SAYS_WHAT_THE_BAR_SHOWS = """(() => {
    const meter = document.getElementById('vad-progress-meter');
    const bar = meter.querySelector('.progress-bar');
    const said = meter.getAttribute('aria-valuetext') || '';
    return /^[0-9,]+ \\/ 400$/.test(said) && said === bar.textContent
        && meter.getAttribute('aria-valuenow') === bar.getAttribute('aria-valuenow');
})()"""


def progressbars(page) -> list[dict]:
    """The progressbars of Chromium's own accessibility tree: {name, valuetext} each."""
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")
    return [{"name": node.get("name", {}).get("value"),
             "valuetext": next((p["value"].get("value") for p in node.get("properties", [])
                                if p["name"] == "valuetext"), None)}
            for node in tree["nodes"] if not node.get("ignored") and node["role"].get("value") == "progressbar"]


def test_the_speech_job_has_one_named_progress_bar_that_follows_the_job(page, served):
    watch = Watch(page, served)
    page.goto(served + "/tts")
    page.wait_for_selector("#vad-start:not([disabled])")
    assert [bar["name"] for bar in progressbars(page)] == [NAME]
    meter = page.get_by_role("progressbar", name=NAME)
    assert (meter.get_attribute("aria-valuenow"), meter.get_attribute("aria-valuemin"),
            meter.get_attribute("aria-valuemax")) == ("0", "0", "100")

    page.click("#vad-start")
    # while it measures, the named bar says what the bar shows: its percent, and its label ("32 / 400")
    page.wait_for_function(SAYS_WHAT_THE_BAR_SHOWS, timeout=DEADLINE_MS)
    bars = progressbars(page)
    assert len(bars) == 1 and bars[0]["name"] == NAME, bars
    page.click("#vad-cancel")
    page.wait_for_selector("#vad-start:not([disabled])", timeout=DEADLINE_MS)
    page.wait_for_function("document.getElementById('vad-progress-meter').getAttribute('aria-valuenow') === '0'")
    watch.check()
