"""Usage errors exit 2 as the command line is read, before the manifest is read; each names the
option, or the environment variable the value came from, its value and the fix (the real CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
ROWS = [
    {"audio_filepath": "a.wav", "duration": 2.0, "text": "the cat sat", "pred_text": "the bat sat"},
    {"audio_filepath": "b.wav", "duration": 1.0, "text": "hello world", "pred_text": "hello world"},
]
SETTINGS = ("SDE_PORT", "SDE_HOST", "SDE_AUTH", "SDE_REMOTE_TIMEOUT")


def _sde(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**clean, "PYTHONPATH": ROOT, **(env or {})})


def _refused_before_reading(r: subprocess.CompletedProcess, *said: str) -> str:
    """Exit 2, one error line saying all of ``said``, no traceback, and no manifest read."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and all(s in errors[0] for s in said), r.stderr[-2000:]
    assert "reading " not in r.stderr and "scoring " not in r.stderr, r.stderr[-2000:]
    return errors[0]


def test_a_filter_syntax_error_is_a_usage_error_pointing_at_the_character(write_manifest, tmp_path):
    m = write_manifest(ROWS)
    r = _sde("export", str(m), "--filter", "{wer} >", "-o", str(tmp_path / "out.json"), "--no-cache")
    _refused_before_reading(r, "--filter", "character 8", "missing value after {wer} >")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("option, kind", [("--vocab", "file"), ("--predictions", "file"),
                                          ("--audio-base-path", "folder")])
@pytest.mark.parametrize("command", ["stats", "export", "serve"])
def test_a_local_path_that_does_not_exist_is_refused_before_the_build(write_manifest, tmp_path, command, option,
                                                                      kind):
    m = write_manifest(ROWS)
    missing = str(tmp_path / "no" / "such")
    extra = ["-o", str(tmp_path / "out.json")] if command == "export" else ["--port", "0"] if command == "serve" else []
    r = _sde(command, str(m), option, missing, "--no-cache", *extra)
    _refused_before_reading(r, option, f"{missing}: {kind} not found")


@pytest.mark.parametrize("option", ["--rules", "--reviews"])
def test_export_refuses_a_rules_or_reviews_file_that_does_not_exist_before_the_build(write_manifest, tmp_path,
                                                                                     option):
    m = write_manifest(ROWS)
    missing = str(tmp_path / "nothing.yaml")
    r = _sde("export", str(m), "-o", str(tmp_path / "out.json"), option, missing, "--no-cache")
    _refused_before_reading(r, option, f"{missing}: file not found")


def test_a_relative_path_that_does_not_exist_names_the_folder_it_starts_from(write_manifest, tmp_path):
    m = write_manifest(ROWS)
    r = _sde("stats", str(m), "--audio-base-path", "audio", "--no-cache", cwd=tmp_path)
    _refused_before_reading(r, "audio: folder not found", f"relative paths start from {tmp_path}")


def test_an_audio_base_url_is_taken_as_given(write_manifest):
    r = _sde("stats", str(write_manifest(ROWS)), "--audio-base-path", "s3://bucket/audio", "--no-cache", "--json")
    assert r.returncode == 0, r.stderr[-2000:]


def test_an_audio_base_folder_that_exists_is_used(write_manifest, tmp_path):
    (tmp_path / "audio").mkdir()
    r = _sde("stats", str(write_manifest(ROWS)), "--audio-base-path", str(tmp_path / "audio"), "--no-cache")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("variable, value, said", [
    ("SDE_PORT", "abc", ["SDE_PORT (an environment variable, set to 'abc')", "not a valid integer",
                         "fix or unset SDE_PORT", "--port on the command line overrides it"]),
    ("SDE_PORT", "70000", ["SDE_PORT (an environment variable, set to '70000')", "fix or unset SDE_PORT"]),
    ("SDE_AUTH", "annsecret", ["SDE_AUTH (an environment variable)", "expected USER:PASSWORD",
                               "fix or unset SDE_AUTH"]),
])
def test_a_bad_value_from_the_environment_names_the_variable_not_the_option(variable, value, said):
    error = _refused_before_reading(_sde("demo", env={variable: value}), *said)
    assert "'--port'" not in error and "'--auth'" not in error
    if variable == "SDE_AUTH":
        assert value not in error  # a password is never echoed


def test_a_bad_value_typed_on_the_command_line_still_names_the_option():
    _refused_before_reading(_sde("demo", "--port", "abc", env={"SDE_PORT": "8050"}), "'--port'", "'abc'")


def test_a_host_from_the_environment_that_cannot_be_bound_names_the_variable(tmp_path):
    r = _sde("demo", "--port", "0", "--cache-dir", str(tmp_path / "cache"), env={"SDE_HOST": "no-such-host.invalid"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]  # a usage error, as README says
    assert "SDE_HOST=no-such-host.invalid; fix or unset it" in r.stderr and "reading " not in r.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_a_malformed_remote_timeout_is_a_usage_error_naming_the_variable_and_the_fix(write_manifest, value):
    r = _sde("stats", str(write_manifest(ROWS)), "--no-cache", env={"SDE_REMOTE_TIMEOUT": value})
    _refused_before_reading(r, f"SDE_REMOTE_TIMEOUT={value!r}", "not a number of seconds above 0",
                            "SDE_REMOTE_TIMEOUT=60", "unset it for the default 20")


@pytest.mark.parametrize("value", ["120", " 2.5 ", ""])
def test_a_well_formed_remote_timeout_is_accepted(write_manifest, value):
    r = _sde("stats", str(write_manifest(ROWS)), "--no-cache", "--json", env={"SDE_REMOTE_TIMEOUT": value})
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("command", ["stats", "export", "serve", "demo"])
@pytest.mark.parametrize("first", ["--no-cache", "--cache-dir"])
def test_no_cache_with_a_cache_dir_is_refused_naming_both(write_manifest, tmp_path, command, first):
    folder = str(tmp_path / "cache")
    both = ["--no-cache", "--cache-dir", folder] if first == "--no-cache" else ["--cache-dir", folder, "--no-cache"]
    sources = [] if command == "demo" else [str(write_manifest(ROWS))]
    extra = ["-o", str(tmp_path / "out.json")] if command == "export" else ["--port", "0"] \
        if command in ("serve", "demo") else []
    r = _sde(command, *sources, *both, *extra)
    _refused_before_reading(r, f"--cache-dir {folder} and --no-cache", "give one")
    assert not os.path.exists(folder)


def test_readme_lists_every_environment_variable_the_help_names():
    readme = (Path(ROOT) / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    helps = _sde("--help").stdout + _sde("serve", "--help").stdout + _sde("demo", "--help").stdout
    for variable in ("SDE_CACHE_DIR", "SDE_PORT", "SDE_HOST", "SDE_AUTH", "SDE_CACHE_SIZE"):
        if variable in helps:
            assert any(line.startswith(f"| `{variable}`") or f"`{variable}`" in line for line in table), variable
    assert any(line.startswith("| `SDE_CACHE_DIR`") for line in table)
    assert any(line.startswith("| `SDE_PORT`") for line in table)
