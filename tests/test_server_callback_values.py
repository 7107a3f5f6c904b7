"""A page callback answers any JSON values a client posts as its inputs (a number where the page
holds text, a dict where it holds a list, null, a huge list, an unknown normalisation step): no
browser sends them, but a script can, and the answer is never a 500 with a traceback in the
server's log. The real server (sde.web.serve), one request per case."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from sde.web import serve as serving
from sde.web import state
from sde.web.app import CALLBACK_PATH

HUGE = list(range(100_000))


@pytest.fixture(scope="module")
def server(web_app):
    srv = serving.listening_server(web_app, "127.0.0.1", serving.bind("127.0.0.1", 0))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.socket.getsockname()[1]
    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60).read()  # the pages register their callbacks
    yield web_app, port
    srv.shutdown()
    srv.server_close()


def _id(raw):
    """A callback's component id as a request names it (a pattern's wildcard: index 0)."""
    if isinstance(raw, str) and raw.startswith("{"):
        raw = json.loads(raw)
    if isinstance(raw, dict):
        return {k: (0 if isinstance(v, list) else v) for k, v in raw.items()}, True
    return raw, False


def _prop_id(raw, prop: str) -> str:
    cid, _ = _id(raw)
    return (json.dumps(cid, separators=(",", ":"), sort_keys=True) if isinstance(cid, dict) else cid) + "." + prop


def _outputs(key: str):
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    outs = []
    for part in parts:
        raw, prop = part.rsplit(".", 1)
        cid, wild = _id(raw)
        out = {"id": cid, "property": prop.split("@")[0]}
        outs.append([out] if wild else out)
    return outs if key.startswith("..") else outs[0]


def callback_body(app, output: str, values: dict, changed: str) -> dict:
    """The request of the callback whose output names `output`: each input and state null but
    those `values` gives ("component.property": value), `changed` the input that fired."""
    matches = [k for k in app.callback_map if output in k and app.callback_map[k].get("callback")]
    assert len(matches) == 1, (output, matches)
    key = matches[0]
    cb = app.callback_map[key]

    def props(entries):
        out = []
        for e in entries:
            cid, wild = _id(e["id"])
            name = _prop_id(e["id"], e["property"])
            item = {"id": cid, "property": e["property"], "value": values.get(name)}
            out.append([item] if wild else item)
        return out

    return {"output": key, "outputs": _outputs(key), "inputs": props(cb["inputs"]), "state": props(cb["state"]),
            "changedPropIds": [changed]}


SIGNAL_KIND = f"{state.UTT_SIGNAL_KIND}.value"
HIST_CLICK = '{"key":0,"type":"stats-hist"}.clickData'
CLICK = {"points": [{"customdata": {"a": 1}}]}
REVIEW = {"review-keep.n_clicks": 1, "utt-id.data": 0}

# (what is posted: the callback's output, its values, the input that fired)
CASES = {
    # components.href_of_click (Errors' tables and charts)
    "errors table click is a number": ("errors-sub-grid.cellClicked", {"errors-sub-grid.cellClicked": 5}),
    "errors chart click is a list": ("errors-sub-fig.clickData", {"errors-sub-fig.clickData": [1, 2]}),
    "errors chart points is a number": ("errors-sub-fig.clickData", {"errors-sub-fig.clickData": {"points": 5}}),
    "errors chart customdata is a dict": ("errors-sub-fig.clickData", {"errors-sub-fig.clickData": CLICK}),
    "breakdown chart point is a number": ("errors-breakdown-fig.clickData",
                                          {"errors-breakdown-fig.clickData": {"points": [5]}}),
    # comparison.click_href and update
    "comparison word click is a float": ("cmp-word-fig.clickData", {"cmp-word-fig.clickData": 3.5}),
    "comparison state is a number": ("cmp-word-fig.clickData", {"cmp-word-fig.clickData": {"points": [{}]},
                                                                 "cmp-state.data": 7}),
    "comparison utterance id is huge": ("cmp-utt-fig.clickData",
                                        {"cmp-utt-fig.clickData": {"points": [{"customdata": [1e308]}]},
                                         "cmp-state.data": {"a": 5, "b": [1]}}),
    "comparison filter is a dict": ("cmp-filter.value", {"cmp-filter.value": {"a": 1}, "cmp-state.data": [1]}),
    # rules.uploaded_rules and view_state
    "rules upload is a number": ("rules-upload.contents", {"rules-upload.contents": 5,
                                                           "rules-upload.filename": {"a": 1}}),
    "rules upload is a dict": ("rules-upload.contents", {"rules-upload.contents": {"a": 1}}),
    "rules view is a float": ("rules-view.value", {"rules-view.value": 3.5}),
    "rules URL search is a list": ("rules-view.value", {"rules-view.value": "", "url.search": [1]}),
    "rules name is a number": ("rules-add.n_clicks", {"rules-add.n_clicks": 1, "rules-name.value": 5,
                                                      "rules-filter.value": ["{wer} > 1"]}),
    # statistics.bin_href and renormalize
    "histogram click is a number": (HIST_CLICK, {HIST_CLICK: 5}),
    "histogram point is a number": (HIST_CLICK, {HIST_CLICK: {"points": [5]}}),
    "normalise steps is a number": ("stats-normalize.value", {"stats-normalize.value": 5}),
    "normalise steps is a dict": ("stats-normalize.value", {"stats-normalize.value": {"a": 1}}),
    "normalise steps is huge": ("stats-normalize.value", {"stats-normalize.value": HUGE}),
    "log-y URL search is a number": ("stats-log-y.value", {"stats-log-y.value": True, "url.search": 5}),
    # review.samples_links
    "samples state is a number": ("samples-state.data", {"samples-state.data": 5}),
    "samples state is text": ("samples-state.data", {"samples-state.data": "x"}),
    "samples state's filter is a number": ("samples-state.data", {"samples-state.data": {"effective": 5, "sort": [1]}}),
    # table pages
    "samples filter is a dict": ("samples-filter.value", {"samples-filter.value": {"a": 1}}),
    "samples URL search is a number": ("samples-columns.value", {"samples-columns.value": ["text"], "url.search": 5,
                                                                  "samples-state.data": 5}),
    # utterance.signal_view
    "utterance id is a dict": (SIGNAL_KIND, {SIGNAL_KIND: "linear", "utt-id.data": {"a": 1}}),
    "utterance id is text": (SIGNAL_KIND, {SIGNAL_KIND: [], "utt-id.data": "x"}),
    "utterance id is huge": (SIGNAL_KIND, {SIGNAL_KIND: 5, "utt-id.data": 10 ** 30}),
    # errors.update and breakdown.grid_block
    "errors filter is a list": ("errors-filter.value", {"errors-filter.value": [1, 2]}),
    "errors state is a number": ("errors-filter.value", {"errors-filter.value": "", "errors-state.data": 5}),
    "breakdown state is a number": ("errors-breakdown-grid.getRowsRequest",
                                    {"errors-breakdown-grid.getRowsRequest": {}, "errors-state.data": 5}),
    # review.review_action
    "review store is text": ("review-keep.n_clicks", {**REVIEW, "review-saved.data": "x"}),
    "review store's review is a number": ("review-keep.n_clicks", {**REVIEW, "review-saved.data": {"id": 0, "review": 5}}),
    "review conflict is a number": ("review-take-theirs.n_clicks",
                                    {**REVIEW, "review-take-theirs.n_clicks": 1,
                                     "review-saved.data": {"id": 0, "review": {}, "conflict": 5}}),
    "review id is text": ("review-keep.n_clicks", {**REVIEW, "utt-id.data": "0", "review-saved.data": {"id": "0"}}),
}

# The output each case's callback has (a unique part of its output key).
OUTPUT_OF = {
    "errors-sub-grid.cellClicked": "url.href@", "errors-sub-fig.clickData": "url.href@",
    "errors-breakdown-fig.clickData": "url.href@", "cmp-word-fig.clickData": "url.href@",
    "cmp-utt-fig.clickData": "url.href@", "cmp-filter.value": "cmp-stats-box.children",
    "rules-upload.contents": "rules-store.data", "rules-add.n_clicks": "rules-store.data",
    "rules-view.value": "rules-table.children", HIST_CLICK: "url.href@",
    "stats-normalize.value": "stats-recognition.children", "stats-log-y.value": '"type":"stats-hist"}.figure',
    "samples-state.data": "samples-manifest.href", "samples-filter.value": "samples-filter.invalid",
    "samples-columns.value": "samples-grid.columnDefs", SIGNAL_KIND: "utt-signal.figure",
    "errors-filter.value": "errors-summary-box.children",
    "errors-breakdown-grid.getRowsRequest": "errors-breakdown-grid.getRowsResponse",
    "review-keep.n_clicks": "review-status.children", "review-take-theirs.n_clicks": "review-status.children",
}


def _callback_for(app, changed: str) -> str:
    """The output key of the callback fired by `changed` (several may share an output prefix)."""
    wanted = OUTPUT_OF[changed]
    keys = [k for k, cb in app.callback_map.items() if wanted in k and cb.get("callback")
            and any(_prop_id(e["id"], e["property"]) == changed for e in cb["inputs"])]
    assert len(keys) == 1, (changed, keys)
    return keys[0]


def post(port: int, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{CALLBACK_PATH}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_callback_value_is_no_server_error(server, capfd, case):
    app, port = server
    changed, values = CASES[case]
    key = _callback_for(app, changed)
    code, text = post(port, callback_body(app, key, values, changed))
    err = capfd.readouterr().err
    assert code in (200, 204), (case, code, text[:300])
    assert "Traceback" not in err, err[-2000:]


@pytest.mark.parametrize("steps", [["bogus"], ["lower", {"a": 1}], "lower"])
def test_an_unknown_normalisation_step_is_named_above_the_raw_numbers(server, capfd, steps):
    app, port = server
    key = _callback_for(app, "stats-normalize.value")
    code, text = post(port, callback_body(app, key, {"stats-normalize.value": steps}, "stats-normalize.value"))
    assert code == 200 and "Traceback" not in capfd.readouterr().err
    assert "unknown normalisation steps" in text and "choose among lower, punct, numbers" in text
    assert "WER" in text  # the raw numbers are still shown


def test_known_normalisation_steps_answer_as_before(server, capfd):
    app, port = server
    key = _callback_for(app, "stats-normalize.value")
    code, text = post(port, callback_body(app, key, {"stats-normalize.value": ["lower", "punct"]},
                                          "stats-normalize.value"))
    assert code == 200 and "unknown normalisation" not in text and "Traceback" not in capfd.readouterr().err
