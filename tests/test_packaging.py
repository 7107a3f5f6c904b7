"""The wheel carries what a non-editable install needs to look and work the same: the CSS, fonts,
favicon and scripts of sde/assets, and the demo dataset with its audio."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_assets_and_demo(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("sde-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in (ROOT / "sde" / "assets").rglob("*"):
        if asset.is_file():
            assert asset.relative_to(ROOT).as_posix() in names
    manifest = ROOT / "sde" / "demo" / "manifest.json"
    assert "sde/demo/manifest.json" in names
    for line in manifest.read_text(encoding="utf-8").splitlines():
        audio = json.loads(line)["audio_filepath"]
        assert f"sde/demo/{audio}" in names
    assert any(n.endswith("entry_points.txt") for n in names)
