"""Python's full garbage collections are paused while a command imports its libraries
(sde.startup_gc.pause_full_collections) and resume before any work: a build collects as Python does,
a forked worker too, and a server resumes them before it listens.
Each case runs sde's real main() in a fresh interpreter, so the test process's collector is never
touched; what it records is the collector's state at the moment named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PAUSED = 10**9
ROOT = Path(__file__).resolve().parent.parent  # this checkout's sde, whatever the environment has installed

# The script records (moment, full-collection threshold, objects frozen) as main() reaches each
# moment: sde.web.serve.serve is replaced by a recorder that returns instead of listening.
SCRIPT = textwrap.dedent("""
    import gc, json, os, sys
    import sde.build.load, sde.web.serve

    seen = []

    def record(moment):
        seen.append([moment, gc.get_threshold()[2], gc.get_freeze_count()])

    load_dataset = sde.build.load.load_dataset

    def loading(*args, **kwargs):
        record("dataset load")
        pid = os.fork()
        if pid == 0:  # a forked worker: collecting as Python does
            os.write(1, ("CHILD " + str(gc.get_threshold()[2]) + "\\n").encode())
            os._exit(0)
        os.waitpid(pid, 0)
        return load_dataset(*args, **kwargs)

    sde.build.load.load_dataset = loading
    import_dash = sde.web.serve.import_dash

    def importing():
        import_dash()
        record("web framework imported")

    sde.web.serve.import_dash = importing
    sde.web.serve.serve = lambda app, **kwargs: record("listening")
    import sde.cli
    sys.argv = ["sde", *sys.argv[1:]]
    try:
        sde.cli.main()
    except SystemExit:
        pass
    record("after the command")
    print("SEEN " + json.dumps(seen))
""")


def _run(tmp_path, *args: str) -> tuple[list, list[int]]:
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0 + i, "text": "hello world",
                                            "pred_text": "hello word"}) + "\n" for i in range(3)))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *[a.replace("M", str(manifest)) for a in args],
                           "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.split("SEEN ", 1)[1])
    children = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("CHILD ")]
    return seen, children


@pytest.mark.parametrize("args", [["M", "--port", "0"], ["serve", "M", "--port", "0"]], ids=["sde-M", "sde-serve-M"])
def test_a_server_collects_while_loading_and_from_listening_on(tmp_path, args):
    seen, children = _run(tmp_path, *args)
    moments = {moment: (threshold, frozen) for moment, threshold, frozen in seen}
    default = gc_default_threshold()
    assert moments["dataset load"][0] == default  # a build is work: paused only for the imports
    assert moments["web framework imported"][0] == PAUSED
    assert moments["listening"][0] == default
    assert moments["listening"][1] == 0  # nothing frozen: a dataset replaced while serving must be collectable
    assert children == [default]


def test_other_commands_collect_from_their_start(tmp_path):
    seen, children = _run(tmp_path, "stats", "M")
    default = gc_default_threshold()
    assert [moment for moment, _, _ in seen] == ["dataset load", "after the command"]
    assert all(threshold == default for _, threshold, _ in seen)
    assert children == [default]


def gc_default_threshold() -> int:
    got = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold()[2])"],
                         capture_output=True, text=True, check=True)
    threshold = int(got.stdout)
    assert threshold != PAUSED
    return threshold


def test_a_command_called_in_process_leaves_the_processs_signals_alone(tmp_path):
    """sde's commands called from another program (click's CliRunner: tests, a notebook) must not
    install the `sde` script's Ctrl-C handler and hook (sde.entry's import does): a later Ctrl-C
    in that program raised SystemExit(130) instead of KeyboardInterrupt (seen in CI, where a test
    that waits for KeyboardInterrupt ran after an in-process command in the same worker)."""
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "hi", "pred_text": "hi"}) + "\n")
    script = textwrap.dedent(f"""
        import signal, sys
        from click.testing import CliRunner
        from sde.cli import cli
        handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
        for args in (["stats", {str(manifest)!r}, "--no-cache"], [{str(manifest)!r}, "--port", "-1"]):
            CliRunner().invoke(cli, args)
        assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook
        assert "sde.entry" not in sys.modules
        print("untouched")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == "untouched", proc.stderr[-3000:]
