"""The wheel carries the shipped data, and an installed (non-editable) edged finds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_installed_wheel_finds_its_data(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("edged-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "edged/py.typed" in names
    assert "edged/_data/configs/edged.toml" in names
    assert "edged/_data/systemd/edged.service" in names

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import edged.paths, edged.config; "
        "d = edged.paths.resource_dir('configs'); "
        "assert edged.config.load(d / 'edged.toml') == edged.config.Config(); print(d)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(target / "edged" / "_data" / "configs")
