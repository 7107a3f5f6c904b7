"""Downloads of a manifest whose name is not ASCII: the name travels as RFC 6266's filename*
(the raw name in the header closed the connection with no answer, or sent Latin-1 bytes)."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import quote

import pytest

from tests.browser_kit import sde_server


@pytest.mark.parametrize("stem", ["清单", "données", "plain"], ids=["chinese", "accented", "ascii"])
def test_every_download_names_the_manifest_whatever_its_script(tmp_path, stem):
    manifest = tmp_path / f"{stem}.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"w{i} x",
                                            "pred_text": "x"}) + "\n" for i in range(5)), encoding="utf-8")
    with sde_server(str(manifest)) as url:
        for route in ("/api/utterances.csv", "/api/vocabulary.csv", "/api/utterances.jsonl"):
            with urllib.request.urlopen(url + route, timeout=60) as answer:
                assert answer.status == 200
                said = answer.headers["Content-Disposition"]
                body = answer.read()
            said.encode("ascii")  # a header of ASCII only
            assert said.startswith("attachment; filename=\"") and body, (route, said)
            if stem == "plain":
                assert said.startswith(f'attachment; filename="{stem}') and "filename*" not in said, (route, said)
            else:
                assert f"filename*=UTF-8''{quote(stem, safe='')}" in said, (route, said)
