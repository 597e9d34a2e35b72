"""What a real daemon run leaves in its data dir is its own: files 0600, folders 0700."""

from __future__ import annotations

import re
import stat
import urllib.request
from pathlib import Path

import pytest

from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.integration.upload_support import s3, upstream_settings
from tests.s3server import S3Server

pytestmark = pytest.mark.integration
__all__ = ["s3"]

UMASK_022 = ("sh", "-c", 'umask 022 && exec "$@"', "umask-022")


def modes(root: Path) -> dict[str, str]:
    """Relative path -> octal mode of everything below `root`, and of `root` itself as '.'."""
    found = {".": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = f"{stat.S_IMODE(path.lstat().st_mode):04o}"
    return found


@pytest.mark.timeout(120)
def test_journal_spool_and_cache_are_private_under_umask_022(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    data_dir = tmp_path / "box-data"  # the data dir start_daemon gives the box
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "media": {"segment_seconds": 1.0, "record_test_pattern": True},
            "upstream": upstream_settings(tmp_path, s3),
        },
        wrapper=UMASK_022,
    )
    daemon.wait_for(re.compile(r"upload \d+ verified: \S+\.mp4"), timeout=60)
    token = (data_dir / "admin.token").read_text().strip()
    put = urllib.request.Request(  # noqa: S310 - loopback
        daemon.url + "/api/v1/assets/teaser.mp4",
        data=make_clip(tmp_path / "teaser.mp4").read_bytes(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(put, timeout=30) as response:  # noqa: S310
        assert response.status == 201
    assert daemon.stop() == 0

    found = modes(data_dir)
    assert "uploads.sqlite3" in found
    assert any(name.startswith("spool/") and name.endswith(".mp4") for name in found)
    assert any(name.startswith("cache/assets/") for name in found)
    loose = {
        name: mode
        for name, mode in found.items()
        if mode != ("0700" if (data_dir / name).is_dir() else "0600")
    }
    assert loose == {}
    warnings = [line for line in daemon.lines if "open to other users" in line]
    assert len(warnings) == 1 and "was mode 0755" in warnings[0], daemon.lines
