"""Values derived from a build and kept beside it in the dataset cache (sde.caching.KeptCache,
sde.cache.kept.KeptWithBuild): what a start computes inside keeping() the next start reads."""

from __future__ import annotations

import pickle

import pytest

from sde.build.load import load_dataset
from sde.cache import DatasetCache, fingerprint
from sde.cache import kept as kept_module
from sde.caching import for_dataset, keeping
from sde.dataset import DatasetOptions, with_predictions

ROWS = [
    {"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"word{i} common words here",
     "pred_text": f"word{i} common word here", "speaker": f"s{i % 3}"}
    for i in range(12)
]


class Counted:
    """A computation that counts its calls and returns a value derived from the dataset."""

    def __init__(self, dataset, extra: str = "") -> None:
        self.dataset, self.extra, self.calls = dataset, extra, 0

    def __call__(self) -> dict:
        self.calls += 1
        return {"rows": len(self.dataset.utterances), "speakers": sorted(self.dataset.utterances["speaker"].unique()),
                "extra": self.extra}


@pytest.fixture
def built(write_manifest, tmp_path):
    """(manifest, cache folder) of a build in the cache, and a function that loads it again."""
    manifest = write_manifest(ROWS)
    folder = tmp_path / "cache"
    load_dataset(manifest, cache_dir=folder)

    def start():
        warnings: list[str] = []
        dataset = load_dataset(manifest, cache_dir=folder, warn=warnings.append)
        assert warnings == []
        return dataset

    return manifest, folder, start


def _kept_names(manifest, folder) -> set[str]:
    key = fingerprint(manifest, DatasetOptions())
    c = DatasetCache(folder)
    try:
        return {k[2] for k in c._store.iterkeys() if isinstance(k, tuple) and k[:2] == ("kept", key)}
    finally:
        c.close()


@pytest.mark.parametrize("once", [True, False], ids=["get_or_compute_once", "get_or_compute"])
def test_a_value_computed_while_keeping_is_read_by_the_next_start(built, once):
    manifest, folder, start = built
    first = start()
    compute = Counted(first)
    cache = for_dataset(first, "page", 2, kept=1)
    ask = cache.get_or_compute_once if once else cache.get_or_compute
    with keeping():
        value = ask(("figures", ""), compute)
    assert compute.calls == 1 and _kept_names(manifest, folder) == {"page/v1/('figures', '')"}

    second = start()
    again = Counted(second)
    cache = for_dataset(second, "page", 2, kept=1)
    assert (cache.get_or_compute_once if once else cache.get_or_compute)(("figures", ""), again) == value
    assert again.calls == 0


def test_a_value_computed_outside_keeping_stays_in_memory(built):
    manifest, folder, start = built
    first = start()
    compute = Counted(first)
    for_dataset(first, "page", 2, kept=1).get_or_compute_once("a visit's filter", compute)
    assert compute.calls == 1 and _kept_names(manifest, folder) == set()
    second = start()
    again = Counted(second)
    for_dataset(second, "page", 2, kept=1).get_or_compute_once("a visit's filter", again)
    assert again.calls == 1


def test_a_value_a_visit_computed_first_is_kept_when_the_warm_up_asks(built):
    manifest, folder, start = built
    first = start()
    compute = Counted(first)
    cache = for_dataset(first, "page", 2, kept=1)
    cache.get_or_compute_once("k", compute)  # the visit, outside keeping()
    with keeping():
        cache.get_or_compute_once("k", compute)  # the warm-up: held in memory, kept now
    assert compute.calls == 1 and _kept_names(manifest, folder) == {"page/v1/'k'"}


@pytest.mark.parametrize("case", ["another version", "another cache", "another key"])
def test_only_the_same_cache_version_and_key_is_read_back(built, case):
    _, _, start = built
    first = start()
    with keeping():
        for_dataset(first, "page", 2, kept=1).get_or_compute_once("k", Counted(first, "old"))
    second = start()
    name, version, key = {"another version": ("page", 2, "k"), "another cache": ("other", 1, "k"),
                          "another key": ("page", 1, "k2")}[case]
    again = Counted(second, "new")
    assert for_dataset(second, name, 2, kept=version).get_or_compute_once(key, again)["extra"] == "new"
    assert again.calls == 1


def test_a_changed_dataset_computes_its_own_and_keeps_nothing(built):
    manifest, folder, start = built
    first = start()
    first.replace_with(with_predictions(first, "pred_text_b", ["word common"] * len(ROWS)))
    compute = Counted(first)
    with keeping():
        for_dataset(first, "page", 2, kept=1).get_or_compute_once("k", compute)
    assert compute.calls == 1 and _kept_names(manifest, folder) == set()
    copy = with_predictions(start(), "pred_text_b", ["word common"] * len(ROWS))  # a copy: no build of its own
    with keeping():
        for_dataset(copy, "page", 2, kept=1).get_or_compute_once("k", Counted(copy))
    assert _kept_names(manifest, folder) == set()


def test_a_dataset_built_without_a_cache_keeps_nothing(write_manifest, tmp_path):
    manifest = write_manifest(ROWS)
    dataset = load_dataset(manifest, use_cache=False)
    compute = Counted(dataset)
    with keeping():
        for_dataset(dataset, "page", 2, kept=1).get_or_compute_once("k", compute)
        for_dataset(dataset, "page", 2, kept=1).get_or_compute_once("k", compute)
    assert compute.calls == 1


def test_a_value_too_big_or_that_does_not_pickle_is_not_kept(built, monkeypatch):
    manifest, folder, start = built
    monkeypatch.setattr(kept_module, "KEPT_VALUE_BYTES", 64)
    first = start()
    with keeping():
        for_dataset(first, "page", 2, kept=1).get_or_compute_once("big", lambda: "x" * 1000)
        value = for_dataset(first, "page", 2, kept=1).get_or_compute_once("lambda", lambda: (lambda: 1))
        small = for_dataset(first, "page", 2, kept=1).get_or_compute_once("small", lambda: 7)
    assert value() == 1 and small == 7
    assert _kept_names(manifest, folder) == {"page/v1/'small'"}


def test_an_unreadable_kept_value_is_computed_again(built):
    manifest, folder, start = built
    first = start()
    with keeping():
        for_dataset(first, "page", 2, kept=1).get_or_compute_once("k", Counted(first))
    c = DatasetCache(folder)
    c._store.set(("kept", fingerprint(manifest, DatasetOptions()), "page/v1/'k'"), b"not a pickle")
    c.close()
    second = start()
    again = Counted(second)
    assert for_dataset(second, "page", 2, kept=1).get_or_compute_once("k", again)["rows"] == len(ROWS)
    assert again.calls == 1


def test_deleting_a_build_removes_what_was_kept_with_it(built):
    manifest, folder, start = built
    first = start()
    with keeping():
        for_dataset(first, "page", 2, kept=1).get_or_compute_once("k", Counted(first))
    key = fingerprint(manifest, DatasetOptions())
    c = DatasetCache(folder)
    assert ("kept", key, "page/v1/'k'") in c._store
    assert c.delete(key)
    assert not any(isinstance(k, tuple) and k[:2] == ("kept", key) for k in c._store.iterkeys())
    c.close()
    # a keeper still held by a running server does not write for the deleted build
    with keeping():
        for_dataset(first, "page", 2, kept=1).get_or_compute_once("k2", Counted(first))
    assert _kept_names(manifest, folder) == set()


def test_kept_values_are_pickles_of_the_computed_value(built):
    manifest, folder, start = built
    first = start()
    with keeping():
        value = for_dataset(first, "page", 2, kept=1).get_or_compute_once("k", Counted(first))
    c = DatasetCache(folder)
    data = c._store.get(("kept", fingerprint(manifest, DatasetOptions()), "page/v1/'k'"))
    c.close()
    assert pickle.loads(data) == value


def test_the_suspicious_counts_are_kept_and_the_next_start_shows_them_without_checking(built, monkeypatch):
    from sde.web.panels import suspicious

    _, _, start = built
    first = start()
    assert not suspicious._computed(first)
    counts = suspicious.summary(first)  # the card's background work: minutes at 10M utterances

    def refuse(dataset):
        raise AssertionError("the checks ran again")

    monkeypatch.setattr(suspicious, "_summary", refuse)
    second = start()
    assert suspicious._computed(second)
    children, final = suspicious.card_state(second)
    assert final and suspicious.summary(second) == counts and counts["utterances"] == len(ROWS)


@pytest.mark.parametrize("checks", [True, False], ids=["sde index --checks", "sde index"])
def test_sde_index_with_checks_keeps_the_suspicious_counts_for_the_next_start(write_manifest, tmp_path, monkeypatch,
                                                                             checks):
    import subprocess
    import sys

    from sde.web.panels import suspicious

    manifest, folder = write_manifest(ROWS), tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(folder),
                           *(["--checks"] if checks else [])], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("suspicious utterances and duplicates counted in" in done.stderr) is checks
    started = load_dataset(manifest, cache_dir=folder)
    assert suspicious._computed(started) is checks
    if checks:
        want = suspicious._summary(load_dataset(manifest, use_cache=False))

        def refuse(dataset):
            raise AssertionError("the checks ran again")

        monkeypatch.setattr(suspicious, "_summary", refuse)
        assert suspicious.summary(started) == want and want["utterances"] == len(ROWS)
