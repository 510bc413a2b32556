"""The built wheel holds ioprofiler.integrations and nothing named integrations at the top."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_has_no_top_level_integrations_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("ioprofiler-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert "integrations" not in top_level, sorted(top_level)
    assert {
        "ioprofiler/integrations/sqlalchemy.py",
        "ioprofiler/integrations/pymemcache.py",
    } <= set(names)
    assert "ioprofiler/render/text.py" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "demo_app/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    assert "License-Expression: MIT" in zipfile.ZipFile(wheel).read(metadata).decode()
