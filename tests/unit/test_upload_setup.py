"""The uploader's parts built from the config (edged/upload/setup.py), on loopback only."""

from __future__ import annotations

import socket
from pathlib import Path

from edged import config
from edged.upload.setup import build_pool, build_store


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_uplinks_store_is_made_with_the_secret_read_at_start(tmp_path: Path) -> None:
    """Finding 12: the secret file is read once, when the pool is built; a secret file changed
    since (here made readable by others) fails no file sent by an uplink."""
    secret = tmp_path / "secret"
    secret.write_text("secret-secret")
    secret.chmod(0o600)
    settings = config.from_mapping(
        {
            "upstream": {
                "endpoint": f"127.0.0.1:{closed_port()}",
                "secure": False,
                "access_key": "edged",
                "secret_key_file": str(secret),
            },
            "upload": {"uplinks": [{"match": "lo"}]},
        }
    )
    default = build_store(settings, "box")
    pool = build_pool(settings, tmp_path, "box", default, None)
    secret.chmod(0o644)
    await pool.refresh()
    (lo,) = pool.uplinks
    assert lo.interface == "lo"
    bound = pool.store_for(lo)
    assert bound is not default
    assert bound.source_address == "127.0.0.1"
