"""What a user's session keeps across pages, without a browser: the context the inspector carries
there and back, the choices pages write into their URL. Over the hostile manifest of conftest.py."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from sde.web import state
from tests.browser_kit import by_id, components, dash_update, get_json, prop, text_of

SPEAKER_EN_GB = json.dumps({"speaker": {"filterType": "text", "type": "equals", "filter": "en-gb"}},
                           separators=(",", ":"), sort_keys=True)


def _query(href: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(href).query).items()}


def test_back_to_list_brings_the_column_filters_back_as_column_filters(web_app, web_client, web_dataset):
    from sde.web.pages import samples, utterance

    # The user typed `{wer} > 0` in the box and picked speaker = en-gb in the grid's header.
    table_state = {"filter": "{wer} > 0", "colfilter": SPEAKER_EN_GB, "sort": "-duration", "cols": "",
                   "effective": '{wer} > 0 && {speaker} = "en-gb"'}
    # en-gb rows with errors, longest first: 5 (2.5 s), 2 (1.5 s); row 1 of the grid is utterance 2.
    out = dash_update(web_client, web_app, "url.href", {"samples-grid.cellClicked": {"rowIndex": 1}},
                      {"samples-state.data": table_state})
    opened = out["url.href"]
    assert urlparse(opened).path == "/utterance/2"
    params = _query(opened)
    assert params["filter"] == "{wer} > 0" and params["colfilter"] == SPEAKER_EN_GB

    page = utterance.layout(web_dataset, "/utterance/2", params)
    assert text_of(by_id(page, "utt-position")) == "2 of 2 (filtered)"   # the list the grid showed
    assert prop(by_id(page, state.UTT_PREV), "href").startswith("/utterance/5?")
    assert _query(prop(by_id(page, state.UTT_PREV), "href"))["colfilter"] == SPEAKER_EN_GB
    back = prop(by_id(page, state.UTT_BACK), "href")
    assert _query(back) == {"filter": "{wer} > 0", "colfilter": SPEAKER_EN_GB, "sort": "-duration", "focus": "2"}

    # Samples, as it was: the box holds the box's filter, the grid its column filter, row 2 in view.
    view = samples.layout(web_dataset, "/samples", _query(back))
    assert prop(by_id(view, "samples-filter"), "value") == "{wer} > 0"
    grid_options = prop(by_id(view, "samples-grid"), "dashGridOptions")
    assert grid_options["initialState"]["filter"]["filterModel"] == json.loads(SPEAKER_EN_GB)
    assert prop(by_id(view, "samples-focus"), "data") == {"uid": 2, "index": 1}


def test_an_inspector_link_with_a_broken_column_filter_walks_the_box_filter(web_dataset):
    from sde.web.pages import utterance

    page = utterance.layout(web_dataset, "/utterance/2", {"filter": "{wer} > 0", "colfilter": "{not json"})
    assert prop(by_id(page, state.UTT_NEXT), "href").startswith("/utterance/3?")
    assert text_of(by_id(page, "utt-position")) == "2 of 5 (filtered)"


def test_the_rules_page_keeps_its_within_filter_in_the_url(web_app, web_client, web_dataset):
    from sde.web.pages import rules

    out = dash_update(web_client, web_app, "rules-table.children",
                      {"rules-view.value": "{wer} > 50", "rules-store.data": None}, {"url.search": "?add=%7Bwer%7D"},
                      triggered="rules-view.value")
    assert _query(out["url.search"]) == {"filter": "{wer} > 50", "add": "{wer}"}
    assert out["rendered.data"]["params"] == {"filter": "{wer} > 50", "add": "{wer}"}
    # ... which the reload renders (the router's key matches: no second render of the same view).
    view = rules.layout(web_dataset, "/rules", _query(out["url.search"]))
    assert prop(by_id(view, "rules-view"), "value") == "{wer} > 50"
    # The page opened from that URL writes nothing more; emptying the box clears it.
    same = dash_update(web_client, web_app, "rules-table.children",
                       {"rules-view.value": "{wer} > 50", "rules-store.data": None},
                       {"url.search": out["url.search"]}, triggered="rules-view.value")
    assert "url.search" not in same
    cleared = dash_update(web_client, web_app, "rules-table.children",
                          {"rules-view.value": "", "rules-store.data": None},
                          {"url.search": out["url.search"]}, triggered="rules-view.value")
    assert _query(cleared["url.search"]) == {"add": "{wer}"}


def test_a_rule_added_from_an_add_link_leaves_the_url_without_it(web_app, web_client, web_dataset):
    from sde.web.pages import rules

    # Samples' "Save as rule" opened /rules?filter=…&add=…: the form holds the filter to save.
    search = "?" + urlencode({"filter": "{wer} > 50", "add": "{wer} > 0"})
    page = rules.layout(web_dataset, "/rules", _query(search))
    assert prop(by_id(page, "rules-filter"), "value") == "{wer} > 0"
    form = {"rules-name.value": "any error", "rules-filter.value": "{wer} > 0", "rules-store.data": None,
            "url.search": search}
    # A rule the form cannot add leaves the URL as it is (the user fixes the form).
    refused = dash_update(web_client, web_app, "rules-store.data", {"rules-add.n_clicks": 1},
                          {**form, "rules-name.value": ""})
    assert "rules-store.data" not in refused and "url.search" not in refused
    for trigger in ("rules-add.n_clicks", "rules-filter.n_submit"):   # the button, or Enter in the form
        out = dash_update(web_client, web_app, "rules-store.data", {trigger: 1}, form)
        assert out["rules-store.data"] == {"rules": [{"name": "any error", "filter": "{wer} > 0"}]}
        assert _query(out["url.search"]) == {"filter": "{wer} > 50"}
        assert out["rendered.data"]["params"] == {"filter": "{wer} > 50"}   # the router does not render again
        # ... so a reload shows an empty form, within the same view.
        reloaded = rules.layout(web_dataset, "/rules", _query(out["url.search"]))
        assert not prop(by_id(reloaded, "rules-filter"), "value")
        assert prop(by_id(reloaded, "rules-view"), "value") == "{wer} > 50"
    # A URL without `add=` is left alone.
    plain = dash_update(web_client, web_app, "rules-store.data", {"rules-add.n_clicks": 1},
                        {**form, "url.search": "?filter=%7Bwer%7D+%3E+50"})
    assert plain["rules-store.data"]["rules"] and "url.search" not in plain


def test_the_favicon_is_served_where_a_json_twin_asks_for_it(web_client):
    from sde.web.app import ASSETS

    r = web_client.get("/favicon.ico")
    assert r.status_code == 200 and r.mimetype in ("image/x-icon", "image/vnd.microsoft.icon")
    assert r.get_data() == (ASSETS / "favicon.ico").read_bytes()


def test_each_alphabet_character_and_the_digits_alert_list_their_utterances(web_app, web_client, web_dataset):
    from sde.web.pages import statistics

    page = statistics.layout(web_dataset, "/statistics", {})
    chars = [c for c in components(by_id(page, state.STATS_ALPHABET)) if prop(c, "className") == "alpha-char"]
    texts = [str(t) for t in web_dataset.utterances["text"]]
    assert len(chars) == len(web_dataset.alphabet)
    for char, chip in zip(web_dataset.alphabet, chars):
        listed = get_json(web_client, "/api/utterances?" + urlparse(prop(chip, "href")).query)
        assert listed["total"] == sum(char in t for t in texts), char
    digits = prop(by_id(page, "alphabet-digits-link"), "href")
    listed = get_json(web_client, "/api/utterances?" + urlparse(digits).query)
    assert sorted(r["text"] for r in listed["rows"]) == sorted(t for t in texts if any(c.isdigit() for c in t))
    assert text_of(by_id(page, "alphabet-digits")).startswith("2 references contain digits (show them).")


@pytest.fixture(scope="module")
def reviewed(web_manifest, tmp_path_factory):
    """An app over the hostile manifest with reviews on: its Flask server and dataset."""
    from sde.dataset import build_dataset
    from sde.web.app import AppConfig, create_app

    dataset = build_dataset(web_manifest)
    reviews = tmp_path_factory.mktemp("user-session") / "r.sqlite"
    app = create_app(dataset, AppConfig(audio_routes=False, reviews=str(reviews)))
    return app.server, dataset


def test_a_typed_correction_is_saved_without_the_spaces_around_it(reviewed):
    from sde.web.panels.review import review_action

    server, dataset = reviewed
    values = {"uid": 0, "saved": {"id": 0, "version": 0, "review": {}, "conflict": None},
              "text": "  the cat  sat \t", "note": "", "tags": "", "mode": False, "search": "", "last": None}
    with server.test_request_context():
        out = review_action(dataset, "review-fix", values)
    assert out["saved"]["review"]["text"] == "the cat  sat"
    assert get_json(server.test_client(), "/api/utterances/0/review")["text"] == "the cat  sat"


def test_next_unreviewed_walks_the_list_with_its_column_filters(reviewed):
    from sde.web.panels.review import next_unreviewed

    server, dataset = reviewed
    # en-gb rows with errors: 2 and 5; 0 (en-gb, no error) and 1, 3, 4 (other speakers) are not in it.
    with server.test_request_context():
        assert next_unreviewed(dataset, 2, {"filter": "{wer} > 0", "colfilter": SPEAKER_EN_GB}) == 5
        assert next_unreviewed(dataset, 5, {"filter": "{wer} > 0", "colfilter": SPEAKER_EN_GB}) == 2


def test_an_empty_reference_says_so(web_dataset):
    from sde.web.pages import utterance

    assert web_dataset.utterances["text"].iat[4] == ""
    assert text_of(by_id(utterance.layout(web_dataset, "/utterance/4", {}), "utt-reference")) == "(empty reference)"
    assert text_of(by_id(utterance.layout(web_dataset, "/utterance/0", {}), "utt-reference")) == "the cat sat"
