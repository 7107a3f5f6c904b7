"""Files that are not NeMo manifests get one message naming what they look like and what to do,
through the real CLI (`sde stats FILE`: exit 1, one message, no traceback)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sde.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
LINES = 30  # enough lines that a per-line report would be obvious


def _supervision(i: int) -> dict:
    return {"id": f"utt-{i}", "recording_id": f"rec-{i}", "start": 0.0, "duration": 2.5, "channel": 0,
            "text": "hello world"}


def _recording(i: int) -> dict:
    return {"id": f"rec-{i}", "sources": [{"type": "file", "channels": [0], "source": f"/data/{i}.wav"}],
            "sampling_rate": 16000, "num_samples": 40000, "duration": 2.5, "channel_ids": [0]}


def _jsonl(make) -> bytes:
    return "".join(json.dumps(make(i)) + "\n" for i in range(LINES)).encode()


def _nemo(i: int) -> dict:
    return {"audio_filepath": f"{i}.wav", "duration": 1.0, "text": "hello world"}


CASES = {
    # name: (file name, content, words the one message must contain)
    # a CutSet alone is read (tests/sources/test_lhotse_source.py); half a recordings + supervisions pair is not
    "lhotse_supervisions": ("supervisions.jsonl", _jsonl(_supervision),
                            ["Lhotse supervisions manifest", "pass it together with its recordings manifest"]),
    "lhotse_recordings_gz": ("recordings.jsonl.gz", gzip.compress(_jsonl(_recording)),
                             ["Lhotse recordings manifest", "pass it together with its supervisions manifest"]),
    "kaldi_text": ("text", "".join(f"spk1-utt{i:04d} HELLO WORLD NUMBER {i}\n" for i in range(LINES)).encode(),
                   ["Kaldi text file", "join wav.scp and text"]),
    "kaldi_wav_scp": ("wav.scp", "".join(f"spk1-utt{i:04d} /data/wav/utt{i:04d}.wav\n" for i in range(LINES)).encode(),
                      ["Kaldi wav.scp", "join wav.scp and text"]),
    "kaldi_wav_scp_pipes": ("wav.scp", "".join(f"utt{i} sox /data/{i}.flac -t wav - |\n" for i in range(LINES)).encode(),
                            ["Kaldi wav.scp", "piped entries"]),
    "kaldi_segments": ("segments", "".join(f"utt{i:04d} rec1 {i * 2.5:.2f} {i * 2.5 + 2.5:.2f}\n"
                                           for i in range(LINES)).encode(), ["Kaldi segments file", "offset"]),
    "json_array": ("data.json", json.dumps([_nemo(i) for i in range(LINES)], indent=2).encode(),
                   ["JSON array", "jq -c '.[]'"]),
    # objects written with json.dump(..., indent=2): every line was "invalid JSON", no fix named
    "pretty_printed_objects": ("pretty.json", "".join(json.dumps(_nemo(i), indent=2) + "\n" for i in range(LINES)).encode(),
                               ["pretty-printed JSON", "one object per line", "jq -c ."]),
    "one_pretty_object": ("one.json", json.dumps(_nemo(0), indent=4).encode(), ["pretty-printed JSON", "jq -c ."]),
    "pretty_printed_gz": ("pretty.json.gz", gzip.compress("".join(json.dumps(_nemo(i), indent=1) + "\n"
                                                                  for i in range(LINES)).encode()),
                          ["pretty-printed JSON", "gunzip -c", "| jq -c ."]),
    # a gzip-compressed NeMo manifest is read (tests/test_hostile_manifests.py: gzip_of_a_manifest)
    "tsv_common_voice": ("validated.tsv", ("client_id\tpath\tsentence\tup_votes\n" + "".join(
        f"c{i}\tclip_{i}.mp3\tHello there number {i}.\t2\n" for i in range(LINES))).encode(),
        ["TSV table (columns: client_id, path, sentence, up_votes)", "sep='\\t'",
         "{'path': 'audio_filepath', 'sentence': 'text'}", "to_json('manifest.json', orient='records', lines=True"]),
    "csv_with_header": ("metadata.csv", ("audio,transcript,duration\n" + "".join(
        f"wavs/{i}.wav,\"hello, world {i}\",1.5\n" for i in range(LINES))).encode(),
        ["CSV table (columns: audio, transcript, duration)", "{'audio': 'audio_filepath', 'transcript': 'text'}"]),
}


def sde_stats(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(path), "--no-cache"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", list(CASES))
def test_not_a_nemo_manifest_is_one_message(tmp_path, name):
    file_name, content, words = CASES[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    r = sde_stats(path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    message = r.stderr.strip()
    assert message.count("\n") == 0 and message.startswith(f"Error: {path}: "), message
    for word in words:
        assert word in message, message
    assert "NeMo" in message or "jq" in message or "gunzip" in message


NEMO_LOOKALIKES = [
    # real NeMo manifests that must still load, line by line
    ["not json at all", json.dumps(_nemo(1)), json.dumps(_nemo(2))],
    [json.dumps({**_nemo(0), "id": "utt-0", "recording_id": "r0"}), json.dumps(_nemo(1))],
    [json.dumps({**_nemo(0), "text": "spk1-utt0001 HELLO"}), json.dumps(_nemo(1))],
    [json.dumps({**_nemo(0), "text": "a,b\tc"})],
    # a first line cut short, or a stray brace, before good lines: not pretty-printed JSON
    [json.dumps(_nemo(0))[:-1], json.dumps(_nemo(1)), json.dumps(_nemo(2))],
    ["{", json.dumps(_nemo(1)), json.dumps(_nemo(2))],
]


@pytest.mark.parametrize("lines", NEMO_LOOKALIKES, ids=["bad_first_line", "lhotse_keys_too", "kaldi_like_text",
                                                        "commas_and_tabs", "first_line_cut_short", "stray_brace"])
def test_nemo_manifests_that_look_like_other_formats_still_load(tmp_path, lines):
    path = tmp_path / "manifest.json"
    path.write_text("\n".join(lines) + "\n")
    m = read_manifest(path)
    valid = sum(_is_object(line) for line in lines)
    assert len(m.table) == valid
    assert len(m.problems) == len(lines) - valid


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
