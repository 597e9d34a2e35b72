"""The uplinks shown to people: `edged doctor`, `edged uploads` and `GET /api/v1/uploads`, on this
machine's loopback only (an upstream on 127.0.0.1 leaves by `lo`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from tests.integration.upload_support import s3, upstream_settings
from tests.s3server import S3Server
from tests.support import run_edged

pytestmark = pytest.mark.integration
__all__ = ["s3"]


def test_doctor_names_the_loopback_uplink(tmp_path: Path, s3: S3Server) -> None:
    config = tmp_path / "edged.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "upstream": upstream_settings(tmp_path, s3),
                "upload": {"uplinks": [{"match": "lo", "metered": True, "daily_budget": "1GiB"}]},
            }
        )
    )
    result = run_edged(
        "doctor", "--json", "--config", str(config), "--data-dir", str(tmp_path / "d"), timeout=120
    )
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["upstream"]["status"] == "OK"
    assert checks["uplink lo"] == {
        "name": "uplink lo",
        "status": "OK",
        "detail": "127.0.0.1; up; metered; carries guest, clip, manifest; route to upstream: yes; "
        f"budget left today {1024**3} bytes",
        "advice": "",
    }
