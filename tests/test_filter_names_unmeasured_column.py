"""A view filter (the filter box, the JSON API's `filter=`) naming a column that only a build
option measures (sde.rules.MEASURED_BY), on a server started without that option.

Before, the box and /api/utterances said only `Unknown column "speech_ratio"`, and a filter on
{dup_audio_group} (a column that exists, empty on every row without --vad) selected nothing
without a word. Now they say which option measures the column, as the Rules page does; a column
the table holds (a manifest's own field of the name) is filtered as before."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from sde.web.present import check_filter, selection
from tests.browser_kit import dash_update, sde_server
from tests.quality_kit import write

RATE = 16_000


def manifest(folder: Path, rows: list[dict]) -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE).astype(np.float32)
    for row in rows:
        write(folder / row["audio_filepath"], 0.1 * tone, RATE)
    (folder / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plain")
    manifest(d, [{"audio_filepath": f"{name}.wav", "duration": 1.0, "text": name} for name in ("one", "two")])
    return d


@pytest.fixture(scope="module")
def own_rate(tmp_path_factory) -> Path:
    """A manifest whose lines carry their own `sample_rate` (not measured: the field as written)."""
    d = tmp_path_factory.mktemp("own_rate")
    manifest(d, [{"audio_filepath": f"{name}.wav", "duration": 1.0, "text": name, "sample_rate": rate}
                 for name, rate in (("narrow", 8000), ("wide", 16000))])
    return d


def get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            body = answer.read().decode()
            return answer.status, json.loads(body) if answer.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def api(base: str, route: str, flt: str) -> str:
    return f"{base}/api/{route}?" + urllib.parse.urlencode({"filter": flt})


# (case, the filter, the column, the option that measures it)
UNMEASURED_IN_A_FILTER = [
    ("speech activity", "{speech_ratio} < 0.5", "speech_ratio", "--vad"),
    ("duplicate audio, empty without the option", "{dup_audio_group} is not null", "dup_audio_group", "--vad"),
    ("audio metric beside a valid clause", "{duration} > 0 && {clipping_ratio} > 0.001", "clipping_ratio",
     "--estimate-audio-metrics"),
]
IDS = [c[0] for c in UNMEASURED_IN_A_FILTER]


@pytest.fixture(scope="module")
def dataset(plain):
    return build_dataset(plain / "m.json")


@pytest.mark.parametrize("case, flt, column, option", UNMEASURED_IN_A_FILTER, ids=IDS)
def test_the_filter_box_names_the_option_that_measures_the_column(dataset, case, flt, column, option):
    shown = check_filter(dataset.utterance_query, flt)
    assert shown is not None and f"{{{column}}} is measured by {option}" in shown, shown
    assert f"restart sde with {option}" in shown, shown


@pytest.mark.parametrize("case, flt, column, option", UNMEASURED_IN_A_FILTER, ids=IDS)
def test_the_errors_and_comparison_pages_filter_names_the_option(dataset, case, flt, column, option):
    _ids, shown = selection(dataset, flt)
    assert shown is not None and f"{{{column}}} is measured by {option}" in shown, shown


def test_a_valid_filter_box_is_unchanged(dataset):
    assert check_filter(dataset.utterance_query, "{duration} > 0.5 && {text} = one") is None
    assert 'Unknown column "speeech_ratio"' in check_filter(dataset.utterance_query, "{speeech_ratio} < 0.5")


@pytest.fixture(scope="module")
def server(plain):
    with sde_server("serve", "m.json", cwd=plain) as url:
        yield url


@pytest.mark.parametrize("route", ["utterances", "utterances.csv"])
@pytest.mark.parametrize("case, flt, column, option", UNMEASURED_IN_A_FILTER, ids=IDS)
def test_the_api_answers_400_naming_the_column_and_the_option(server, route, case, flt, column, option):
    code, payload = get(api(server, route, flt))
    assert code == 400, payload
    assert (payload["column"], payload["option"]) == (column, option)
    assert f"{{{column}}} is measured by {option}" in payload["error"], payload
    assert f"restart sde with {option}" in payload["error"], payload


# (case, the filter, the texts of the rows it selects)
VALID_FILTERS = [
    ("a plain column", "{duration} > 0.5", ["one", "two"]),
    ("a text match", "{text} = two", ["two"]),
    ("text duplicates need no option", "{dup_text_group} is not null", []),
]


@pytest.mark.parametrize("case, flt, texts", VALID_FILTERS, ids=[c[0] for c in VALID_FILTERS])
def test_a_valid_filter_on_the_api_is_unchanged(server, case, flt, texts):
    code, payload = get(api(server, "utterances", flt))
    assert code == 200, payload
    assert [row["text"] for row in payload["rows"]] == texts


def test_a_manifest_s_own_field_of_a_measured_name_is_filtered(own_rate):
    with sde_server("serve", "m.json", cwd=own_rate) as url:
        code, payload = get(api(url, "utterances", "{sample_rate} < 16000"))
    assert code == 200, payload
    assert [row["text"] for row in payload["rows"]] == ["narrow"]
    assert check_filter(build_dataset(own_rate / "m.json").utterance_query, "{sample_rate} < 16000") is None


@pytest.fixture(scope="module")
def page(dataset):
    app = create_app(dataset, AppConfig(title="samples", audio_routes=False))
    return app, app.server.test_client()


@pytest.mark.parametrize("case, flt, column, option", UNMEASURED_IN_A_FILTER, ids=IDS)
def test_the_samples_filter_box_names_the_option(page, case, flt, column, option):
    app, client = page
    out = dash_update(client, app, "samples-filter.invalid", {"samples-filter.value": flt},
                      {"samples-applied.data": ""})
    assert out["samples-filter.invalid"] is True and "samples-applied.data" not in out
    shown = out["samples-filter-feedback.children"]
    assert f"{{{column}}} is measured by {option}" in shown and f"restart sde with {option}" in shown, shown


def test_the_vocabulary_filter_box_says_unknown_column(page):
    app, client = page
    out = dash_update(client, app, "vocabulary-filter.invalid", {"vocabulary-filter.value": "{speech_ratio} < 1"},
                      {"vocabulary-applied.data": ""})
    assert 'Unknown column "speech_ratio"' in out["vocabulary-filter-feedback.children"]
