"""Every module imports on its own (no cycles), and pure modules stay free of I/O libraries."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import edged

MODULES = sorted(
    module.name
    for module in pkgutil.walk_packages(edged.__path__, prefix="edged.")
    if module.name != "edged.__main__"
)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["edged.errors", "edged.config"])
def test_foundation_modules_import_no_adapters(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('aiohttp', 'av', 'zeroconf', 'minio', 'pyudev') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_webrtc_loads_only_with_its_first_viewer() -> None:
    """aiortc costs ~30 MiB of RSS: the daemon and its web layer must not import it up front."""
    code = "import sys, edged.daemon, edged.cli; print('aiortc' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
