"""Whether NeMo is installed is learnt without importing it: the import takes ~15 s of CPU, which
the transcribe panel of every manifest without predictions (drawn on its Statistics page, and laid
out by `sde index`) paid before anyone asked for a transcription."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nemo") is None, reason="needs nemo_toolkit[asr]")

LAYOUT = """
import json, sys
from sde.dataset import DatasetOptions, build_dataset
from sde.web.panels import transcribe
dataset = build_dataset(sys.argv[1], DatasetOptions())
card = transcribe.layout(dataset)
print(json.dumps({"imported": "nemo.collections.asr" in sys.modules,
                  "offers_transcription": transcribe.MODEL in str(card.to_plotly_json())}))
"""


def test_the_transcribe_panel_offers_nemo_without_importing_it(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "hello there"}) + "\n"
                                for i in range(20)))
    run = subprocess.run([sys.executable, "-c", LAYOUT, str(manifest)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {"imported": False, "offers_transcription": True}
