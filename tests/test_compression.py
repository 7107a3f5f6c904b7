"""Answers are compressed for browsers that ask, through the real `sde` process: scripts, pages
and JSON in any encoding the client accepts (gzip, brotli, zstd), the same bytes once decoded;
audio (ranges included), images and CSV downloads pass as they are; a client that asks for no
encoding gets plain bodies."""

from __future__ import annotations

import gzip
import json
import re

import brotli
import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

try:  # Python 3.14's own zstd module, or the backport flask-compress uses before it
    from compression import zstd
except ImportError:  # pragma: no cover - depends on the Python and flask-compress versions
    try:
        from backports import zstd
    except ImportError:  # flask-compress before its switch to the backport brings zstandard
        import zstandard as zstd

SR = 16_000
DECODE = {"gzip": gzip.decompress, "br": brotli.decompress, "zstd": zstd.decompress}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compressed")
    t = np.arange(2 * SR) / SR
    sf.write(folder / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * t), SR, subtype="PCM_16")
    lines = [json.dumps({"audio_filepath": str(folder / "a.wav"), "duration": 2.0, "text": f"the cat sat {i}",
                         "pred_text": f"the bat sat {i % 7}", "speaker": f"s{i % 3}"}) for i in range(300)]
    (folder / "m.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with SdeServer(str(folder / "m.json")) as s:
        yield s
    assert_no_traceback(s)


def _same_page(body: bytes) -> bytes:
    """The body without the id Dash makes afresh for each page it serves."""
    return re.sub(rb'"end_id":"[^"]*"', b'"end_id":""', body)


def _script_path(server: SdeServer) -> str:
    code, _, page = server.get("/")
    assert code == 200
    scripts = re.findall(r'src="(/_dash-component-suites/[^"]+\.js[^"]*)"', page.decode())
    assert scripts, page[:500]
    return scripts[0]


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("what", ["script", "page", "json", "layout"])
def test_text_answers_are_compressed_in_the_encoding_asked_and_decode_to_the_plain_body(server, encoding, what):
    path = {"script": _script_path(server), "page": "/samples", "json": "/api/utterances?page_size=200",
            "layout": "/_dash-layout"}[what]
    code, plain_headers, plain = server.get(path)
    assert code == 200 and "content-encoding" not in plain_headers
    code, headers, body = server.get(path, {"Accept-Encoding": encoding})
    assert code == 200
    assert headers["content-encoding"] == encoding
    assert "accept-encoding" in headers.get("vary", "").lower()
    assert _same_page(DECODE[encoding](body)) == _same_page(plain)
    if len(plain) > 20_000:
        assert len(body) < len(plain) / 2


@pytest.mark.parametrize("path, headers, status", [
    ("/audio/0.wav", {}, 200),
    ("/audio/0.wav", {"Range": "bytes=100-1099"}, 206),
    ("/api/utterances.csv", {}, 200),
])
def test_audio_and_downloads_pass_as_they_are(server, path, headers, status):
    code, _, plain = server.get(path, headers)
    assert code == status
    code, got_headers, body = server.get(path, {**headers, "Accept-Encoding": "gzip, br, zstd"})
    assert code == status
    assert "content-encoding" not in got_headers
    assert body == plain
    if status == 206:
        assert len(body) == 1000 and got_headers["content-range"].startswith("bytes 100-1099/")
