"""Breakdowns of any cardinality: sde.analysis.group_rates / GroupedRates (sums, sorting,
thresholds, per-group bootstrap intervals), /api/breakdown and its CSV twin over a generated
manifest with 1,179 speakers (sorted and paged on the server, hostile parameters refused), and the
Errors page's breakdown (menu, chart of the worst/best groups, the table's server-side blocks)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import flask
import numpy as np
import pandas as pd
import pytest

from sde import analysis as A
from sde.analysis import groups as G
from sde.dataset import DatasetOptions, build_dataset
from sde.web.api import register_api
from sde.web.pages import breakdown, errors
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, dash_update, get_csv, get_json, text_of

S = pd.StringDtype("pyarrow")
SPEAKERS = 1179
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


# ---------------------------------------------------------------- a manifest with 1,179 speakers

def manifest_rows() -> list[dict]:
    """Speaker k has 1 + k % 5 utterances; error rates differ between speakers (seeded)."""
    rng = np.random.default_rng(7)
    rows = []
    for k in range(SPEAKERS):
        p = rng.uniform(0.0, 0.6)
        for j in range(1 + k % 5):
            ref = list(rng.choice(WORDS, size=int(rng.integers(2, 9))))
            hyp = [w if rng.random() > p else "zulu" for w in ref]
            if rng.random() < p / 2:
                hyp.pop()
            rows.append({"audio_filepath": f"s{k}_{j}.wav", "duration": float(rng.uniform(0.5, 25.0)),
                         "text": " ".join(ref), "pred_text": " ".join(hyp), "speaker": f"spk{k:04d}",
                         "spk_id": 19 + 7 * k, "utt_name": f"u{k}_{j}"})
    return rows


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    path = tmp_path_factory.mktemp("many") / "many.json"
    path.write_text("\n".join(json.dumps(r) for r in manifest_rows()) + "\n", encoding="utf-8")
    return build_dataset(path, DatasetOptions(), workers=1)


@pytest.fixture(scope="module")
def client(many):
    server = flask.Flask("test")
    register_api(server, many)
    return server.test_client()


@pytest.fixture(scope="module")
def many_app(many):
    return create_app(many, AppConfig(title=many.name, audio_routes=False))


@pytest.fixture(scope="module")
def truth(many) -> pd.DataFrame:
    """Per-speaker sums worked out with pandas from the utterance table (independently of sde.analysis)."""
    t = many.utterances
    df = pd.DataFrame({"value": t["speaker"].astype(str), "e": t["sub"] + t["del"] + t["ins"],
                       "words": t["num_words"], "ce": t["char_edits"], "c": t["num_chars"]})
    g = df.groupby("value").agg(utterances=("e", "size"), e=("e", "sum"), words=("words", "sum"),
                                ce=("ce", "sum"), c=("c", "sum")).reset_index()
    g["wer"] = 100 * g["e"] / g["words"]
    g["cer"] = 100 * g["ce"] / g["c"]
    return g


def all_rows(client, query: str, ci: bool = False) -> list[dict]:
    rows, page = [], 0
    while True:
        got = get_json(client, f"/api/breakdown?by=speaker&page_size=500&page={page}&ci={int(ci)}&{query}")
        rows += got["rows"]
        if len(got["rows"]) < 500:
            return rows
        page += 1


def expected_order(truth: pd.DataFrame, sort: str) -> list[str]:
    key, descending = sort.lstrip("-"), sort.startswith("-")
    if key == "value":
        return sorted(truth["value"], reverse=descending)
    # ties in value order, whichever the direction of the key
    t = truth.assign(k=-truth[key] if descending else truth[key]).sort_values(["k", "value"])
    return t["value"].tolist()


# ---------------------------------------------------------------- sde.analysis

def random_table(n: int, groups: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 25, n)
    codes = rng.integers(0, groups, n)
    speaker = np.array([f"s{i}" for i in range(groups)], dtype=object)[codes]
    speaker[rng.random(n) < 0.01] = None
    return pd.DataFrame({
        "speaker": pd.array(speaker, dtype=S),
        "dense_id": 1000 + codes,                      # small span: the counting path
        "sparse_id": codes.astype(np.int64) * 10**12,  # huge span: the hash path
        "flag": codes % 2 == 0,
        "num_words": words, "num_chars": words * 5,
        "sub": rng.binomial(words, 0.1), "del": rng.binomial(words, 0.05), "ins": rng.binomial(3, 0.1, n),
        "char_edits": rng.binomial(words * 5, 0.05),
    })


@pytest.mark.parametrize("by", ["speaker", "dense_id", "sparse_id", "flag"])
def test_group_rates_equal_a_pandas_groupby_on_600_groups(by):
    t = random_table(20_000, 600, seed=1)
    got = A.group_rates(t, by, {}).groups
    t["e"] = t["sub"] + t["del"] + t["ins"]
    g = t.groupby(by, dropna=False).agg(utterances=("e", "size"), e=("e", "sum"), n=("num_words", "sum"),
                                        ce=("char_edits", "sum"), c=("num_chars", "sum"))
    present = g.index.notna()
    ordered = pd.concat([g[present].sort_index(), g[~present]])
    assert len(got) == len(ordered) == (600 + (by == "speaker") if by != "flag" else 2)
    assert got["value"].tolist()[:5] == [v.item() if hasattr(v, "item") else v for v in ordered.index[:5]]
    assert got["utterances"].tolist() == ordered["utterances"].tolist()
    assert got["words"].tolist() == ordered["n"].tolist()
    assert got["wer"].to_numpy() == pytest.approx((100 * ordered["e"] / ordered["n"]).to_numpy())
    assert got["cer"].to_numpy() == pytest.approx((100 * ordered["ce"] / ordered["c"]).to_numpy())


@pytest.mark.parametrize("by, make", [
    ("maybe_id", lambda codes, missing: pd.array(np.where(missing, None, codes % 50), dtype="Int64")),
    ("maybe", lambda codes, missing: pd.array(np.where(missing, None, codes % 2 == 0), dtype="boolean")),
    ("speaker_py", lambda codes, missing: pd.array(np.where(missing, None, [f"s{c}" for c in codes]),
                                                   dtype=pd.StringDtype("python"))),
])
def test_group_rates_of_nullable_columns_equal_a_pandas_groupby(by, make):
    t = random_table(5_000, 120, seed=3)
    rng = np.random.default_rng(4)
    t[by] = make(t["dense_id"].to_numpy() - 1000, rng.random(len(t)) < 0.05)
    grouped = A.group_rates(t, by, {})
    got = grouped.groups
    t["e"] = t["sub"] + t["del"] + t["ins"]
    g = t.groupby(by, dropna=False).agg(utterances=("e", "size"), n=("num_words", "sum"), e=("e", "sum"))
    present = g.index.notna()
    ordered = pd.concat([g[present].sort_index(), g[~present]])
    assert got["value"].tolist() == [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
                                     for v in ordered.index]
    assert got["utterances"].tolist() == ordered["utterances"].tolist()
    assert got["wer"].to_numpy() == pytest.approx((100 * ordered["e"] / ordered["n"]).to_numpy(), nan_ok=True)
    # Each utterance's group (what the intervals resample) is the group holding its value.
    values = got["value"].to_numpy(dtype=object)[grouped.slot]
    assert [None if pd.isna(v) else v for v in t[by].astype(object)] == values.tolist()


def small_groups() -> A.GroupedRates:
    # speaker: a (2 utts, 10 words, WER 30), b (2, 12, 25), c (1, 8, 37.5), missing (1, 0 words, 100)
    t = pd.DataFrame({
        "speaker": pd.array(["a", "a", "b", "b", None, "c"], dtype=S),
        "num_words": [4, 6, 2, 10, 0, 8], "num_chars": [20, 30, 10, 50, 0, 40],
        "sub": [1, 0, 0, 2, 0, 1], "del": [0, 1, 0, 1, 0, 1], "ins": [0, 1, 0, 0, 2, 1],
        "char_edits": [2, 5, 0, 8, 6, 9],
    })
    return A.group_rates(t, "speaker", {})


@pytest.mark.parametrize("sort,min_words,min_utterances,expected", [
    ("value", 0, 0, ["a", "b", "c", None]),
    ("-wer", 0, 0, [None, "c", "a", "b"]),
    ("-wer", 1, 0, ["c", "a", "b"]),          # the missing group has no reference words
    ("-wer", 10, 0, ["a", "b"]),
    ("wer", 0, 2, ["b", "a"]),
    ("cer", 11, 2, ["b"]),
    ("-words", 0, 0, ["b", "a", "c", None]),
    ("value", 100, 0, []),
])
def test_view_sorts_and_hides_small_groups(sort, min_words, min_utterances, expected):
    grouped = small_groups()
    view = grouped.view(sort, min_words, min_utterances)
    assert view["value"].tolist() == expected
    # the index is the group number: the same group's row in grouped.groups
    assert grouped.groups.loc[view.index, "value"].tolist() == expected


def _grouped_by(values: list) -> A.GroupedRates:
    """Groups of one utterance per value (one reference word each, the third group's has none)."""
    n = len(values)
    words = [0 if i == 2 else 1 for i in range(n)]
    t = pd.DataFrame({"group": pd.array(values, dtype=object if any(not isinstance(v, (str, type(None))) for v in values)
                                        else S),
                      "num_words": words, "num_chars": [5 * w for w in words], "sub": [0] * n, "del": [0] * n,
                      "ins": [0] * n, "char_edits": [0] * n})
    return A.group_rates(t, "group", {})


NUMBER_VALUE_CASES = [  # (case, the column's values, sort, min_words, the groups in order)
    ("text that reads as numbers sorts first, as numbers", ["10", "spk_a", "2", "103", None], "value", 0,
     ["2", "10", "103", "spk_a", None]),
    ("descending: numbers high to low, then text Z to A, missing last", ["10", "spk_a", "2", "b", None, "1e3"],
     "-value", 0, ["1e3", "10", "2", "spk_a", "b", None]),
    ("descending with a group hidden", ["10", "spk_a", "2", "b", None, "1e3"], "-value", 1,
     ["1e3", "10", "spk_a", "b", None]),  # "2" has no reference word
    ("spaces, exponents, negatives, inf; nan is text", [" 5 ", "-2", "nan", "inf", "1e-1"], "value", 0,
     ["-2", "1e-1", " 5 ", "inf", "nan"]),
    ("equal numbers by their text", ["7.0", "7", "007", "x", "10"], "value", 0, ["007", "7", "7.0", "10", "x"]),
    ("equal numbers by their text, descending", ["7.0", "7", "007", "x", "10"], "-value", 0,
     ["10", "7.0", "7", "007", "x"]),
    ("text alone keeps its order", ["spk_10", "spk_2", "Spk_1"], "-value", 0, ["spk_2", "spk_10", "Spk_1"]),
    ("values of mixed types as their text", [10, "2", "x", 1.5], "value", 0, [1.5, "2", 10, "x"]),
]


@pytest.mark.parametrize("case, values, sort, min_words, expected", NUMBER_VALUE_CASES,
                         ids=[c[0] for c in NUMBER_VALUE_CASES])
def test_a_breakdown_by_value_sorts_text_numbers_as_the_utterances_do(case, values, sort, min_words, expected):
    view = _grouped_by(values).view(sort, min_words)
    assert view["value"].tolist() == expected


def test_intervals_are_seeded_and_do_not_depend_on_the_other_groups_asked():
    grouped = A.group_rates(random_table(5000, 300, seed=2), "speaker", {})
    everything = grouped.intervals(np.arange(len(grouped.groups)), n_resamples=300, seed=5)
    some = [7, 250, 3]
    lo, hi = grouped.intervals(some, n_resamples=300, seed=5)
    np.testing.assert_allclose(lo, everything[0][some])
    np.testing.assert_allclose(hi, everything[1][some])
    other = grouped.intervals(some, n_resamples=300, seed=6)
    assert not np.allclose(other[0], lo)
    wer = grouped.groups["wer"].to_numpy()
    assert np.all(everything[0] <= wer + 1e-9) and np.all(wer - 1e-9 <= everything[1])


def test_intervals_are_remembered_per_group_and_settings_within_a_bound(monkeypatch):
    computed = []
    compute = G._group_interval

    def counting(errors, *args, **kwargs):
        computed.append(len(errors))
        return compute(errors, *args, **kwargs)

    monkeypatch.setattr(G, "_group_interval", counting)
    grouped = A.group_rates(random_table(2000, 50, seed=8), "speaker", {})
    fresh = A.group_rates(random_table(2000, 50, seed=8), "speaker", {})
    first = grouped.intervals([4, 9, 4], n_resamples=200)
    assert len(computed) == 2
    again = grouped.intervals([9, 4, 11], n_resamples=200)   # only 11 is new
    assert len(computed) == 3
    np.testing.assert_allclose(again[0][:2], first[0][1::-1])
    grouped.intervals([4], n_resamples=200, seed=1)           # other settings: another interval
    assert len(computed) == 4
    expected = fresh.intervals([9, 4, 11], n_resamples=200)
    np.testing.assert_allclose(again[0], expected[0])
    np.testing.assert_allclose(again[1], expected[1])
    monkeypatch.setattr(G, "_MAX_KNOWN_INTERVALS", 5)
    bounded = A.group_rates(random_table(2000, 50, seed=8), "speaker", {})
    lo, hi = bounded.intervals(list(range(10)), n_resamples=200)  # more than the bound: computed, answered
    assert len(lo) == 10 and len(bounded._known_intervals) == 5
    np.testing.assert_allclose(lo[[9, 4]], expected[0][:2])


@pytest.mark.parametrize("selected", [None, "every other row"], ids=["whole table", "a selection"])
def test_each_groups_interval_is_its_rows_bootstrap_whether_from_its_sums_or_its_rows(selected):
    """Large groups' normal-limit intervals come from per-group sums, the others' from their rows
    sorted into runs: each must equal _group_interval over that group's own rows, seeded by its
    value. Groups: large (normal), large with one dominating utterance (exact), small (exact),
    missing values."""
    t = random_table(12_000, 8, seed=4)
    t.loc[t["speaker"] == "s3", "num_words"] = 10
    t.loc[t.index[t["speaker"] == "s3"][0], ["num_words", "sub"]] = [5000, 2500]  # dominates s3
    t.loc[t["speaker"] == "s5", "speaker"] = pd.array([f"tiny{i % 40}" for i in range((t["speaker"] == "s5").sum())],
                                                      dtype=S)
    utt_ids = None if selected is None else np.arange(0, len(t), 2)
    grouped = A.group_rates(t, "speaker", {}, utt_ids=utt_ids)
    wanted = np.arange(len(grouped.groups))
    lo, hi = grouped.intervals(wanted, n_resamples=400, seed=3)
    rows = t if utt_ids is None else t.iloc[utt_ids]
    errors = (rows["sub"] + rows["del"] + rows["ins"]).to_numpy(np.int64)
    words = rows["num_words"].to_numpy(np.int64)
    sizes = []
    for i, value in enumerate(grouped.groups["value"]):
        mine = (rows["speaker"].isna() if value is None else rows["speaker"] == value).to_numpy(bool, na_value=False)
        sizes.append(int(mine.sum()))
        rng = np.random.default_rng([3, G._seed_key(value)])
        expected = G._group_interval(errors[mine], words[mine], 400, 0.05, rng)
        assert (lo[i], hi[i]) == pytest.approx(expected, rel=1e-9, abs=1e-9), value
    assert max(sizes) > G.CI_EXACT_MAX and min(sizes) <= G.CI_EXACT_MAX  # both kinds were asked


def test_a_one_utterance_group_has_a_point_interval_and_a_small_group_a_wide_one():
    grouped = small_groups()
    lo, hi = grouped.intervals([2, 0], n_resamples=500)  # c: one utterance; a: two
    assert (lo[0], hi[0]) == pytest.approx((37.5, 37.5))
    # a's resamples: utt 0 twice (1/4 → 25 %), utt 1 twice (2/6 → 33 %), or both (30 %)
    assert lo[1] == pytest.approx(25.0) and hi[1] == pytest.approx(100 / 3)


def test_intervals_exact_and_normal_limit_agree_on_a_large_group(monkeypatch):
    rng = np.random.default_rng(3)
    n = 2000
    words = rng.integers(1, 30, n)
    t = pd.DataFrame({"g": pd.array(["x"] * n, dtype=S), "num_words": words, "num_chars": words * 5,
                      "sub": rng.binomial(words, 0.15), "del": 0, "ins": 0, "char_edits": 0})
    grouped = A.group_rates(t, "g", {})
    normal = grouped.intervals([0], n_resamples=2000)
    monkeypatch.setattr(G, "CI_EXACT_MAX", 10**9)
    exact = A.group_rates(t, "g", {}).intervals([0], n_resamples=2000)  # a fresh one: intervals are remembered
    width = exact[1][0] - exact[0][0]
    assert width > 0.5
    assert normal[0][0] == pytest.approx(exact[0][0], abs=0.1 * width)
    assert normal[1][0] == pytest.approx(exact[1][0], abs=0.1 * width)


@pytest.mark.parametrize("long_words, long_errors", [(2000, 1000), (2000, 0), (5, 400)],
                         ids=["a long, bad utterance", "a long, perfect utterance", "one utterance with most errors"])
def test_a_large_group_one_utterance_dominates_gets_the_exact_bootstraps_interval(long_words, long_errors):
    # the normal limit gave [0.4, 35.0] where resampling the rows gives [18.4, 35.5]: one 2,000-word
    # line among 600 short ones skews the resampled sums
    rng = np.random.default_rng(5)
    words = rng.integers(5, 15, 600)
    errors = rng.binomial(words, 0.2)
    words[0], errors[0] = long_words, long_errors
    t = pd.DataFrame({"g": pd.array(["x"] * 600, dtype=S), "num_words": words, "num_chars": words * 5,
                      "sub": errors, "del": 0, "ins": 0, "char_edits": 0})
    lo, hi = A.group_rates(t, "g", {}).intervals([0], n_resamples=2000)
    idx = np.random.default_rng(2).integers(0, 600, size=(4000, 600))
    expected = np.quantile(100 * errors[idx].sum(1) / words[idx].sum(1), [0.025, 0.975])
    width = expected[1] - expected[0]
    assert (lo[0], hi[0]) == pytest.approx(tuple(expected), abs=0.08 * width)


def test_intervals_without_packing_match_a_brute_force_resampling():
    # Counts too large to share one int64: the plain (two-gather) path, checked against a loop.
    t = pd.DataFrame({"g": pd.array(["x"] * 5, dtype=S), "num_words": [3 * 10**9, 1, 2, 3, 4],
                      "num_chars": 1, "sub": [10**9, 0, 1, 1, 2], "del": 0, "ins": 0, "char_edits": 0})
    grouped = A.group_rates(t, "g", {})
    lo, hi = grouped.intervals([0], n_resamples=200, seed=9)
    rng = np.random.default_rng([9, G._seed_key("x")])
    idx = rng.integers(0, 5, size=(200, 5), dtype=np.int32)
    e, n = t["sub"].to_numpy()[idx].sum(1), t["num_words"].to_numpy()[idx].sum(1)
    expected = np.quantile(100 * e / n, [0.025, 0.975])
    assert (lo[0], hi[0]) == pytest.approx(tuple(expected))


def test_breakdown_with_intervals_and_thresholds():
    t = random_table(3000, 200, seed=4)
    out = A.breakdown(t, "speaker", {}, sort="-wer", min_utterances=15, ci=True, n_resamples=200)
    assert list(out.columns) == ["value", "utterances", "words", "wer", "cer", "ci_lo", "ci_hi"]
    assert (out["utterances"] >= 15).all() and out["wer"].is_monotonic_decreasing
    assert (out["ci_lo"] <= out["wer"] + 1e-9).all() and (out["wer"] <= out["ci_hi"] + 1e-9).all()


def test_group_counts_offer_high_cardinality_columns_but_not_identifiers(many):
    counts = A.group_counts(many.utterances)
    assert counts["speaker"] == SPEAKERS and counts["spk_id"] == SPEAKERS
    assert "utt_name" not in counts and "duration" not in counts and "id" not in counts
    assert list(counts)[0] == "duration_bucket"


# ---------------------------------------------------------------- /api/breakdown

def test_breakdown_pages_through_every_group(client, truth):
    first = get_json(client, "/api/breakdown?by=speaker")
    assert first["total"] == first["groups"] == SPEAKERS
    assert (first["page"], first["page_size"], first["sort"]) == (0, 50, "value")
    assert [r["value"] for r in first["rows"]] == sorted(truth["value"])[:50]
    assert set(first["rows"][0]) == {"value", "utterances", "words", "wer", "cer", "ci"}
    rows = all_rows(client, "sort=-wer")
    assert len(rows) == SPEAKERS
    pages = [r for p in range(12) for r in
             get_json(client, f"/api/breakdown?by=speaker&sort=-wer&page_size=100&page={p}&ci=0")["rows"]]
    assert pages == rows
    beyond = get_json(client, "/api/breakdown?by=speaker&page=3&page_size=1000")
    assert beyond["rows"] == [] and beyond["total"] == SPEAKERS


@pytest.mark.parametrize("sort", ["value", "-value", "utterances", "-utterances", "words", "-words",
                                  "wer", "-wer", "cer", "-cer"])
def test_breakdown_sorts_on_the_server(client, truth, sort):
    rows = all_rows(client, f"sort={sort}")
    assert [r["value"] for r in rows] == expected_order(truth, sort)
    by_value = truth.set_index("value")
    sample = rows[::97]
    assert [r["wer"] for r in sample] == pytest.approx(by_value.loc[[r["value"] for r in sample], "wer"].tolist(),
                                                       abs=1e-5)
    assert [r["utterances"] for r in sample] == by_value.loc[[r["value"] for r in sample], "utterances"].tolist()


@pytest.mark.parametrize("query,keep", [
    ("min_words=20", lambda t: t["words"] >= 20),
    ("min_utterances=4", lambda t: t["utterances"] >= 4),
    ("min_words=20&min_utterances=4", lambda t: (t["words"] >= 20) & (t["utterances"] >= 4)),
    ("min_words=100000", lambda t: t["words"] >= 100000),
])
def test_breakdown_thresholds_hide_small_groups(client, truth, query, keep):
    rows = all_rows(client, f"sort=-wer&{query}")
    expected = truth[keep(truth)]
    assert len(rows) == len(expected) == get_json(client, f"/api/breakdown?by=speaker&{query}")["total"]
    assert [r["value"] for r in rows] == expected_order(expected, "-wer")


def test_breakdown_intervals_are_the_same_on_every_page(client):
    by_wer = get_json(client, "/api/breakdown?by=speaker&sort=-wer&page_size=40")["rows"]
    by_value = {r["value"]: r for r in all_rows(client, "sort=value", ci=True)}
    for r in by_wer:
        lo, hi = r["ci"]
        assert lo <= r["wer"] <= hi
        assert by_value[r["value"]]["ci"] == [lo, hi]
    assert "ci" not in get_json(client, "/api/breakdown?by=speaker&ci=0")["rows"][0]
    again = get_json(client, "/api/breakdown?by=speaker&sort=-wer&page_size=40&seed=0")["rows"]
    assert again == by_wer
    other = get_json(client, "/api/breakdown?by=speaker&sort=-wer&page_size=40&seed=1")["rows"]
    assert [r["ci"] for r in other] != [r["ci"] for r in by_wer]


def test_breakdown_filter_and_integer_ids(client, truth):
    got = get_json(client, '/api/breakdown?by=speaker&filter={speaker} = "spk0004"')
    assert got["total"] == 1 and got["rows"][0]["utterances"] == 5
    ids_ = get_json(client, "/api/breakdown?by=spk_id&sort=-wer&page_size=5&ci=0")["rows"]
    names = get_json(client, "/api/breakdown?by=speaker&sort=-wer&page_size=5&ci=0")["rows"]
    assert [r["wer"] for r in ids_] == [r["wer"] for r in names]
    assert all(isinstance(r["value"], int) for r in ids_)


@pytest.mark.parametrize("query,keep", [
    ("sort=-wer", lambda t: t["words"] >= 0),
    ("sort=value&min_words=20", lambda t: t["words"] >= 20),
    ("sort=-utterances&min_utterances=5&page_size=3&page=2", lambda t: t["utterances"] >= 5),  # paging ignored
])
def test_breakdown_csv_has_every_group(client, truth, query, keep):
    rows = get_csv(client, f"/api/breakdown.csv?by=speaker&{query}")
    expected = truth[keep(truth)]
    sort = parse_qs(query)["sort"][0]
    assert [r["value"] for r in rows] == expected_order(expected, sort)
    assert list(rows[0]) == ["value", "utterances", "words", "wer", "cer"]
    first = expected.set_index("value").loc[rows[0]["value"]]
    assert float(rows[0]["wer"]) == pytest.approx(first["wer"])


@pytest.mark.parametrize("query,words", [
    ("page_size=100000", ["page_size", "between 1 and 1000"]),
    ("page_size=0", ["page_size"]),
    ("page=-1", ["page", "between 0"]),
    ("page=1000000000000", ["page"]),
    ("page=two", ["page", "integer"]),
    ("sort=nope", ["unknown breakdown sort", "value, utterances, words, wer, cer", "-wer"]),
    ("sort=-ci", ["unknown breakdown sort"]),
    ("min_words=-3", ["min_words", "at least 0"]),
    ("min_utterances=1.5", ["min_utterances", "integer"]),
    ("n_resamples=100000", ["n_resamples", "2000"]),
    ("seed=-1", ["seed"]),
    ("ci=maybe", ["ci", "1 or 0"]),
    ("by=nope", ["unknown column 'nope'", "speaker"]),
    ("hyp=nope", ["hyp", "pred_text"]),
    ("filter={nope} > 1", ["nope"]),
])
def test_breakdown_refuses_hostile_parameters(client, query, words):
    url = f"/api/breakdown?by=speaker&{query}".replace("by=speaker&by=", "by=")
    error = get_json(client, url, 400)["error"]
    assert all(w in error for w in words), error
    if "page" not in query and "ci=" not in query and "n_resamples" not in query and "seed" not in query:
        get_json(client, url.replace("/api/breakdown?", "/api/breakdown.csv?"), 400)


# ---------------------------------------------------------------- the Errors page

def test_errors_menu_lists_speaker_with_all_its_values(many):
    options = breakdown.group_options(many)
    assert {"label": "speaker (1,179 values)", "value": "speaker"} in options
    assert options[0]["value"] == "duration_bucket"
    assert "utt_name" not in [o["value"] for o in options]
    layout = errors.layout(many, "/errors", {})
    picker = by_id(layout, breakdown.BY)
    assert picker.value == "speaker" and picker.options == options
    fig = by_id(layout, breakdown.FIG).figure
    assert len(fig.data[0].y) == breakdown.CHART_GROUPS
    assert "showing 30 of 1,179 speaker groups" in text_of(by_id(layout, breakdown.NOTE))
    assert list(fig.data[0].y) == sorted(fig.data[0].y, reverse=True)  # worst first
    assert fig.data[0].error_y.array is not None  # the intervals' whiskers
    csv_link = by_id(layout, breakdown.CSV)
    assert "all groups" in text_of(csv_link) and csv_link.href.startswith("/api/breakdown.csv?by=speaker")


def test_errors_chart_shows_the_best_groups_above_a_threshold(many):
    h = many.hypotheses[0]
    content, _links = breakdown.content(many, h, "speaker", None, "", min_utts=5, show="best")
    fig = by_id(content, breakdown.FIG).figure
    expected = A.breakdown(many.utterances, "speaker", h, sort="wer", min_utterances=5)
    assert len(expected) > breakdown.CHART_GROUPS
    assert list(fig.data[0].y) == pytest.approx(expected["wer"].head(breakdown.CHART_GROUPS).round(4).tolist())
    assert all(c[1] >= 5 for c in fig.data[0].customdata)
    note = text_of(by_id(content, breakdown.NOTE))
    assert f"of {len(expected)} speaker groups: the lowest WER" in note and "at least 5 utterances" in note


@pytest.mark.parametrize("sort_model,min_utts,key", [
    ([], 1, "-wer"),
    ([{"colId": "value", "sort": "asc"}], 1, "value"),
    ([{"colId": "utterances", "sort": "desc"}], 3, "-utterances"),
    ([{"colId": "cer", "sort": "asc"}], 5, "cer"),
])
def test_errors_table_pages_through_every_group(many, many_app, sort_model, min_utts, key):
    h = many.hypotheses[0]
    state = {"hyp": h.field, "filter": "", "by": "speaker", "min_utts": min_utts, "show": "worst"}
    expected = A.breakdown(many.utterances, "speaker", h, sort=key, min_utterances=min_utts)
    out = dash_update(many_app.server.test_client(), many_app, "errors-breakdown-grid.getRowsResponse",
                      {"errors-breakdown-grid.getRowsRequest": {"startRow": 100, "endRow": 200,
                                                                "sortModel": sort_model}},
                      {"errors-state.data": state})
    response, count = out["errors-breakdown-grid.getRowsResponse"], out["errors-breakdown-count.children"]
    assert response["rowCount"] == len(expected)
    assert [r["value"] for r in response["rowData"]] == expected["value"].iloc[100:200].tolist()
    assert f"{len(expected):,}" in text_of(count)
    row = response["rowData"][0]
    q = parse_qs(urlparse(row["href"]).query)
    assert len(many.utterance_query.select(q["filter"][0])) == row["utterances"]
    assert row["ci_lo"] <= row["wer"] <= row["ci_hi"]


def test_each_breakdown_row_links_to_the_utterances_it_counts_when_the_hypothesis_lacks_lines(tmp_path):
    # a row of 477 utterances opened Samples on 554: the lines without that hypothesis came along
    import json
    from urllib.parse import parse_qs, urlsplit

    from sde.dataset import build_dataset
    from sde.web.pages import breakdown

    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "the cat sat", "lang": ["en", "fr"][i % 2],
             "pred_text": "the cat sat", **({"pred_text_b": "the bat sat"} if i % 3 else {})} for i in range(30)]
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = build_dataset(tmp_path / "m.json")
    block = breakdown.grid_block(dataset, {"hyp": "pred_text_b", "by": "lang", "filter": "{duration} > 0 || {id} < 0"},
                                 {"startRow": 0, "endRow": 10})
    got = block["rows"]["rowData"]
    assert sorted(r["utterances"] for r in got) == [10, 10]
    for row in got:
        link = parse_qs(urlsplit(row["href"]).query)["filter"][0]
        assert link.startswith("({duration} > 0 || {id} < 0) && ") and "{wer_b} is not null" in link, link
        assert len(dataset.utterance_query.select(link)) == row["utterances"], link


def test_a_filtered_breakdown_by_a_label_column_with_intervals_counts_the_groups_left(tmp_path):
    """A dataset read back from the cache keeps `lang` and `speaker` as labels: grouping the rows a
    filter keeps by such a column, whose dictionary holds values none of them has, answered 500
    (KeyError) where the intervals are drawn; a fresh build answered. Checked against pandas."""
    from tests.cache_kit import stored

    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 7, "text": "the cat sat on the mat",
             "pred_text": ["the cat sat on the mat", "a cat sat on a mat", "the bat sat"][i % 3],
             "lang": ["en-US", "en-GB", "en-AU"][i % 3 if i % 2 else 0], "speaker": f"spk{i % 12:02d}"}
            for i in range(240)]
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = stored(build_dataset(tmp_path / "m.json"), tmp_path / "cache", label_min_rows=4)
    assert type(dataset.utterances["speaker"].array).__name__ != "ArrowStringArray"  # labels, not plain text
    client = create_app(dataset, AppConfig(title="t", audio_routes=False)).server.test_client()
    got = get_json(client, '/api/breakdown?by=speaker&ci=1&page_size=50&filter={lang} = "en-AU"')
    t = dataset.utterances
    kept = t[t["lang"].astype(str) == "en-AU"]
    expected = kept.groupby(kept["speaker"].astype(str)).size()
    assert {r["value"]: r["utterances"] for r in got["rows"]} == expected.to_dict()
    assert len(expected) < t["speaker"].nunique()  # some speakers have no en-AU line
    assert all(r["ci"][0] <= r["wer"] <= r["ci"][1] for r in got["rows"])


def _labelled_languages(tmp_path) -> tuple[pd.DataFrame, str]:
    """A cached dataset whose `lang` is a label column of three values, 1,000 lines each; in "xx"
    one 400-word line with 300 errors dominates the group. Returns (its utterances, that value)."""
    from tests.cache_kit import stored

    rng = np.random.default_rng(11)
    rows = []
    for i in range(3000):
        ref = list(rng.choice(WORDS, size=int(rng.integers(8, 13))))
        hyp = [w if rng.random() > 0.1 * (2 + i % 3) else "zulu" for w in ref]
        rows.append({"audio_filepath": f"a{i}.wav", "duration": 2.0, "text": " ".join(ref), "pred_text": " ".join(hyp),
                     "lang": ["en", "de", "xx"][i % 3]})
    long_ref = list(rng.choice(WORDS, size=400))
    rows[2].update(text=" ".join(long_ref), pred_text=" ".join(["zulu"] * 300 + long_ref[300:]))
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = stored(build_dataset(tmp_path / "m.json"), tmp_path / "cache", label_min_rows=4)
    assert type(dataset.utterances["lang"].array).__name__ != "ArrowStringArray"  # labels
    return dataset.utterances, "xx"


def _expected_interval(t: pd.DataFrame, by: str, value, rows: np.ndarray | None, n_resamples: int, seed: int):
    kept = t if rows is None else t.iloc[rows]
    mine = (kept[by].isna() if value is None else kept[by].astype(str) == value).to_numpy(bool)
    errors = (kept["sub"] + kept["del"] + kept["ins"]).to_numpy(np.int64)[mine]
    words = kept["num_words"].to_numpy(np.int64)[mine]
    return G._group_interval(errors, words, n_resamples, 0.05, np.random.default_rng([seed, G._seed_key(value)]))


@pytest.mark.parametrize("selected", [None, "every other row"], ids=["whole table", "a selection"])
def test_large_groups_of_a_label_column_get_their_intervals_from_the_group_by_without_reading_a_row(
        tmp_path, monkeypatch, selected):
    """A breakdown by a column of few values (a language at 10M lines: 4 groups of 2.5M) read every
    row again for its intervals (0.5-1.5 s); its GROUP BY now also sums what the normal limit needs,
    and the intervals of its large groups read no row. A group one utterance dominates still
    resamples its rows. Each interval equals the bootstrap over the group's own rows."""
    t, dominated = _labelled_languages(tmp_path)
    monkeypatch.setattr(G, "CI_EXACT_MAX", 100)  # groups of 500-1,000 lines count as large here
    rows = None if selected is None else np.arange(0, len(t), 2)
    grouped = A.group_rates(t, "lang", {}, utt_ids=rows)
    assert grouped.moments is not None
    values = grouped.groups["value"].tolist()
    plain = [i for i, v in enumerate(values) if v != dominated]

    def no_row_read(*_args, **_kwargs):
        raise AssertionError("an interval read the utterances")

    with monkeypatch.context() as patch:
        patch.setattr(G, "_errors_per_utt", no_row_read)
        patch.setattr(G, "_ints", no_row_read)
        lo, hi = grouped.intervals(plain, n_resamples=400, seed=3)
    for i, a, b in zip(plain, lo, hi):
        assert (a, b) == pytest.approx(_expected_interval(t, "lang", values[i], rows, 400, 3), rel=1e-9, abs=1e-9)
    i = values.index(dominated)
    (a,), (b,) = grouped.intervals([i], n_resamples=400, seed=3)
    assert (a, b) == pytest.approx(_expected_interval(t, "lang", dominated, rows, 400, 3), rel=1e-9, abs=1e-9)


def test_a_page_of_small_groups_reads_its_rows_and_large_groups_sum_once(monkeypatch):
    """Where the groups asked are small (a page of speakers), their rows are read, not every
    group's sums; where large groups hold most of the selection (a column that is no label
    column: duration buckets, plain text), the sums are taken once, at the first intervals."""
    calls = []
    real = G._moments_by_group
    monkeypatch.setattr(G, "_moments_by_group", lambda *a: calls.append(1) or real(*a))
    small = A.group_rates(random_table(6000, 600, seed=2), "speaker", {})
    small.intervals(list(range(20)), n_resamples=100)
    assert calls == []
    t = random_table(6000, 3, seed=2)
    large = A.group_rates(t, "speaker", {})
    assert large.moments is None  # plain text: no sums in its GROUP BY
    values = large.groups["value"].tolist()
    lo, hi = large.intervals([0, 1], n_resamples=100, seed=1)
    large.intervals([2], n_resamples=100, seed=1)
    assert calls == [1]
    for i in (0, 1):
        assert (lo[i], hi[i]) == pytest.approx(_expected_interval(t, "speaker", values[i], None, 100, 1), rel=1e-9)


def test_duration_buckets_are_summed_with_their_moments_in_one_group_by(monkeypatch):
    """Duration buckets (codes computed here, not a column DuckDB reads) are summed by one GROUP BY
    of their codes, which also sums what their intervals need: ~1 s less for a breakdown of 10M
    lines by bucket (bincounts of each weight made float, then every row read for the intervals)."""
    monkeypatch.setattr(G, "CI_EXACT_MAX", 100)
    rng = np.random.default_rng(5)
    t = random_table(6000, 8, seed=5).assign(duration=rng.choice([1.0, 3.0, 7.0, np.nan], 6000, p=[.3, .3, .3, .1]))
    grouped = A.group_rates(t, "duration_bucket", {})
    truth = t.assign(bucket=A.duration_bucket(t["duration"]).astype(object))
    counts = truth.groupby("bucket", dropna=False).size()
    assert dict(zip(grouped.groups["value"], grouped.groups["utterances"])) == \
        {(None if pd.isna(k) else k): v for k, v in counts.items()}
    assert grouped.moments is not None
    monkeypatch.setattr(G, "_errors_per_utt", lambda *a: pytest.fail("an interval read the utterances"))
    values = grouped.groups["value"].tolist()
    lo, hi = grouped.intervals(range(len(values)), n_resamples=200, seed=2)
    assert None in values  # the lines without a duration: a group of their own
    for i, value in enumerate(values):
        expected = _expected_interval(truth, "bucket", value, None, 200, 2)
        assert (lo[i], hi[i]) == pytest.approx(expected, rel=1e-9, abs=1e-9), value
