"""A rule, filter or sort naming a column that only a build option measures (sde.rules.MEASURED_BY:
the speech activity, audio hashes and duplicate-audio groups of --vad, the audio metrics of
--estimate-audio-metrics), where the dataset was built without it.

`sde export` stops with the rule (file:line), the column and the option to add; before, an audio
metric was an "Unknown column" that did not say how to get it. The Rules page and its JSON twin
(POST /api/rules/preview) of a server started without the option say which option measures the
column; before, a rule on {dup_audio_group} counted 0 matches and said nothing."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, dash_update, sde_server, text_of
from tests.test_export_vad_columns_need_vad import export
from tests.quality_kit import write

RATE = 16_000
CLIPPING = 'rules:\n  - name: clipped\n    filter: "{clipping_ratio} > 0.001"\n'


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two real WAV files: a quiet tone and the same tone at full scale, squared off (clipped)."""
    d = tmp_path_factory.mktemp("measured")
    tone = np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE).astype(np.float32)
    write(d / "quiet.wav", 0.1 * tone, RATE)
    write(d / "clipped.wav", np.sign(tone), RATE)
    rows = [{"audio_filepath": f"{name}.wav", "duration": 1.0, "text": name} for name in ("quiet", "clipped")]
    (d / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return d


# (case, the export's arguments, how the error names it, the column it names)
AUDIO_METRIC_WITHOUT_THE_OPTION = [
    ("rule on clipping", ["--rules", "rules.yaml"], "rule 'clipped' (rules.yaml:2)", "{clipping_ratio}"),
    ("filter on sample rate", ["--filter", "{sample_rate} < 16000"], "--filter", "{sample_rate}"),
    ("sort on bandwidth", ["--sort", "-bandwidth_hz"], "--sort", "{bandwidth_hz}"),
]


@pytest.mark.parametrize("case, args, named, column", AUDIO_METRIC_WITHOUT_THE_OPTION,
                         ids=[c[0] for c in AUDIO_METRIC_WITHOUT_THE_OPTION])
def test_an_audio_metric_without_the_option_is_an_error_naming_rule_column_and_option(folder, case, args, named,
                                                                                       column):
    (folder / "rules.yaml").write_text(CLIPPING)
    (folder / "kept.json").unlink(missing_ok=True)
    done = export(folder, *args)
    assert done.returncode != 0, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert named in error and column in error and "add --estimate-audio-metrics" in error, error
    assert not (folder / "kept.json").exists()


def test_with_the_option_the_rule_drops_what_it_names(folder):
    (folder / "rules.yaml").write_text(CLIPPING)
    done = export(folder, "--estimate-audio-metrics", "--rules", "rules.yaml")
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line)["text"] for line in (folder / "kept.json").read_text().splitlines()]
    assert kept == ["quiet"]


# (case, the rule's filter, the column, the option that measures it)
UNMEASURED_ON_THE_SERVER = [
    ("duplicate audio", "{dup_audio_group} is not null", "dup_audio_group", "--vad"),
    ("speech activity", "{speech_ratio} < 0.5", "speech_ratio", "--vad"),
    ("audio metric", "{clipping_ratio} > 0.001", "clipping_ratio", "--estimate-audio-metrics"),
]


def preview(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/api/rules/preview", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.fixture(scope="module")
def server(folder):
    with sde_server("serve", "m.json", cwd=folder) as url:
        yield url


@pytest.mark.parametrize("case, flt, column, option", UNMEASURED_ON_THE_SERVER,
                         ids=[c[0] for c in UNMEASURED_ON_THE_SERVER])
def test_the_preview_of_a_server_without_the_option_names_it(server, case, flt, column, option):
    code, payload = preview(server, {"rules": [{"name": "the rule", "filter": flt}]})
    assert code == 400, payload
    assert (payload["rule"], payload["column"], payload["option"]) == ("the rule", column, option)
    assert f"{{{column}}} is measured by {option}" in payload["error"]
    assert f"restart sde with {option}" in payload["error"], payload["error"]


def test_the_preview_of_a_rules_file_names_its_line(server):
    code, payload = preview(server, {"yaml": 'rules:\n  - name: same audio\n    filter: "{dup_audio_group} >= 0"\n'})
    assert code == 400 and payload["error"].startswith("rules:2: rule 'same audio': {dup_audio_group}"), payload


def test_a_measured_column_is_previewed(server):
    # the text duplicates need no option: the check leaves what the server has alone
    code, payload = preview(server, {"rules": [{"name": "same text", "filter": "{dup_text_group} is not null"}]})
    assert code == 200, payload


@pytest.fixture(scope="module")
def page(folder):
    app = create_app(build_dataset(folder / "m.json"), AppConfig(title="rules", audio_routes=False))
    return app, app.server.test_client()


def test_the_rules_page_says_which_option_measures_a_rule_s_column(page):
    app, client = page
    rules = {"rules": [{"name": "same audio", "filter": "{dup_audio_group} is not null"}]}
    shown = dash_update(client, app, "rules-union.children", {"rules-store.data": rules, "rules-view.value": ""},
                        {"url.search": ""})
    union = text_of(shown["rules-union.children"])
    assert "{dup_audio_group} is measured by --vad" in union and "restart sde with --vad" in union, union


def test_the_rules_page_refuses_to_add_a_rule_on_an_unmeasured_column(page):
    app, client = page
    added = dash_update(client, app, "rules-feedback.children", {"rules-add.n_clicks": 1},
                        {"rules-name.value": "clipped", "rules-filter.value": "{clipping_ratio} > 0.001",
                         "rules-store.data": {"rules": []}, "url.search": ""})
    feedback = text_of(by_id(added["rules-feedback.children"], "rules-error"))
    assert "{clipping_ratio} is measured by --estimate-audio-metrics" in feedback, feedback


def test_the_rules_page_s_view_names_the_option_its_column_needs(page):
    app, client = page
    shown = dash_update(client, app, "rules-view-feedback.children",
                        {"rules-store.data": {"rules": []}, "rules-view.value": "{dup_audio_group} >= 0"},
                        {"url.search": ""}, triggered="rules-view.value")
    assert shown["rules-view.invalid"] is True
    assert "the filter: {dup_audio_group} is measured by --vad" in shown["rules-view-feedback.children"]


def test_the_rules_page_refuses_an_uploaded_rules_file_on_an_unmeasured_column(page):
    app, client = page
    contents = "data:application/x-yaml;base64," + base64.b64encode(CLIPPING.encode()).decode()
    loaded = dash_update(client, app, "rules-feedback.children", {"rules-upload.contents": contents},
                         {"rules-upload.filename": "rules.yaml", "rules-store.data": {"rules": []}, "url.search": ""})
    feedback = text_of(by_id(loaded["rules-feedback.children"], "rules-error"))
    assert feedback.startswith("rules.yaml:2: rule 'clipped': {clipping_ratio} is measured by "
                               "--estimate-audio-metrics"), feedback
