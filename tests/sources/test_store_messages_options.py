"""--storage-options the store's backend refuses, through the real CLI against a real S3-compatible
server (moto's server mode on 127.0.0.1): an endpoint_url without its scheme, and an option s3fs does
not take, are each one message that names the option and the fix, not botocore's ValueError or a
TypeError from AioSession.__init__."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")

from tests.s3_kit import storage, upload  # noqa: E402
from tests.test_s3 import sde  # noqa: E402

LINE = json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a cat"}) + "\n"


@pytest.fixture(scope="module")
def manifest(moto_endpoint) -> str:
    return upload(moto_endpoint, "sde-options", "asr/m.json", LINE.encode())


def _error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)  # the option's value is wrong: a usage error
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_an_endpoint_without_its_scheme_says_which_scheme(manifest, moto_endpoint):
    bare = moto_endpoint.removeprefix("http://")
    said = _error(sde("stats", manifest, "--storage-options", json.dumps({"endpoint_url": bare, "key": "x",
                                                                          "secret": "y"}), "--no-cache"))
    assert f"endpoint_url needs a scheme: http://{bare}" in said, said
    assert "Invalid endpoint" not in said and "ValueError" not in said
    assert f"\nError: {manifest}: --storage-options: " in said, said
    # the fix works: the same endpoint with its scheme reads the manifest
    r = sde("stats", manifest, "--storage-options", storage(moto_endpoint), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["utterances"] == 1


def test_an_option_s3fs_does_not_take_is_named_with_the_options_it_takes(manifest, moto_endpoint):
    said = _error(sde("stats", manifest, "--storage-options", storage(moto_endpoint, bogus_opt=1), "--no-cache"))
    assert "unknown storage option 'bogus_opt'" in said, said
    assert "s3fs takes anon, endpoint_url, key, secret" in said and "profile" in said
    assert "https://s3fs.readthedocs.io" in said
    assert "TypeError" not in said and "AioSession" not in said


def test_a_misspelt_option_gets_the_one_meant(manifest, moto_endpoint):
    options = {"endpoint_url": moto_endpoint, "key": "x", "secret": "y", "anno": True}
    said = _error(sde("stats", manifest, "--storage-options", json.dumps(options), "--no-cache"))
    assert "unknown storage option 'anno' (did you mean 'anon'?)" in said, said


def test_an_unknown_config_kwargs_option_points_at_botocores_config(manifest, moto_endpoint):
    said = _error(sde("stats", manifest, "--storage-options", storage(moto_endpoint, config_kwargs={"bogus": 1}),
                      "--no-cache"))
    assert "unknown storage option 'bogus' in config_kwargs" in said, said
    assert "botocore" in said and "TypeError" not in said
