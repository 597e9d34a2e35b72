"""A reload applies exactly the keys it reports as applied, and an event change moves object
keys, sidecars, the STS policy and the stale-upload prefix together (issue 12, item 14)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomli_w

from edged import config as config_module
from edged.daemon import Daemon, Launch
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.integration.upload_support import BUCKET, minio_client, s3, upstream_settings
from tests.s3server import S3Server

pytestmark = pytest.mark.integration
__all__ = ["s3"]  # fixture

ROLE = "arn:aws:iam::123456789012:role/edged-uploader"


async def test_reload_changes_only_what_it_reports_applied(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    before = {
        "node": {"event": "day1"},
        "upstream": {"prefix": "fleet"},
        "live": {"max_viewers": 20},
    }
    path.write_text(tomli_w.dumps(before))
    daemon = Daemon(Launch(config_module.load(path), config_file=path), environ={})
    after = {"node": {"event": "day2"}, "upstream": {"prefix": "other"}, "live": {"max_viewers": 3}}
    path.write_text(tomli_w.dumps(after))
    report = await daemon.reload()
    assert report["applied"] == ["node.event"]
    assert sorted(report["restart_required"]) == ["live.max_viewers", "upstream.prefix"]
    assert daemon.config.node.event == "day2"
    assert daemon.config.upstream.prefix == "fleet"  # reported for a restart: not applied
    assert daemon.config.live.max_viewers == 20
    assert daemon.naming.event == "day2" and daemon.naming.prefix == "fleet"


@pytest.mark.timeout(120)
def test_an_event_change_moves_keys_sidecars_and_the_sts_policy(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    upstream = {**upstream_settings(tmp_path, s3), "prefix": "fleet", "sts_role_arn": ROLE}
    settings = {
        "mdns": {"enabled": False},
        "node": {"event": "day1"},
        "upstream": upstream,
        "media": {"record_test_pattern": True, "segment_seconds": 1.0},
    }
    daemon = start_daemon(settings)
    verified = r"upload \d+ verified: (fleet/{event}/box/test-pattern/\S+\.mp4)"
    daemon.wait_for(re.compile(verified.format(event="day1")), timeout=40)
    assert s3.sts_policies and all("fleet/day1/" in policy for policy in s3.sts_policies)
    assert daemon.config_file is not None and daemon.data_dir is not None

    text = daemon.config_file.read_text()
    changed = text.replace('event = "day1"', 'event = "day2"').replace(
        'prefix = "fleet"', 'prefix = "elsewhere"'
    )
    assert changed != text
    daemon.config_file.write_text(changed)
    token = (daemon.data_dir / "admin.token").read_text().strip()
    status, body = http(daemon.url + "/api/v1/reload", method="POST", token=token)
    assert status == 200, body
    report = json.loads(body)
    assert report["applied"] == ["node.event"]
    assert report["restart_required"] == ["upstream.prefix"]

    key = daemon.wait_for(re.compile(verified.format(event="day2")), timeout=40).group(1)
    assert any("fleet/day2/" in policy for policy in s3.sts_policies)  # new credentials
    sidecar_key = key.removesuffix(".mp4") + ".json"
    daemon.seen_or_wait(re.compile(rf"upload \d+ verified: {re.escape(sidecar_key)}"))
    client = minio_client(s3)
    response = client.get_object(BUCKET, sidecar_key)
    try:
        sidecar = json.loads(response.read())
    finally:
        response.close()
        response.release_conn()
    assert sidecar["event"] == "day2"  # the sidecar and the key agree
    assert not [o for o in client.list_objects(BUCKET, "elsewhere/", recursive=True)]
    _, metrics = http(daemon.url + "/metrics")
    assert b'event="day2"' in metrics
    assert daemon.stop() == 0
