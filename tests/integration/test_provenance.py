"""Provenance end to end: clips signed with C2PA and recordings' signed sidecars, checked by
`edged verify` (exit 0 when they match, 1 on any change), on the box and after a trip upstream."""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edged.cache.prepare import head_size, prepare
from edged.config import ProvenanceConfig
from edged.errors import MediaError
from edged.fileio import file_sha256
from edged.provenance import ClipClaim, ClipSigner, SigningIdentity, load_identity, sign_clip
from edged.provenance.identity import CERT_FILE, KEY_FILE, PROVENANCE_DIR
from edged.provenance.sidecar import signed
from tests.certs import write_crew_identity
from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.integration.test_recording import whole_fragments
from tests.integration.upload_support import BUCKET, minio_client, moto, upstream_settings
from tests.s3server import MotoProcess
from tests.support import run_edged, until

pytestmark = pytest.mark.integration
__all__ = ["moto"]  # the fixture

RECORDED = re.compile(r"recorded (?P<name>\S+\.mp4): \d+ frames")


def mdat_offset(path: Path) -> int:
    """The first byte of the media data (a byte every signature covers)."""
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        if kind == b"mdat":
            return offset + header
        offset += size
    raise AssertionError(f"{path.name} has no mdat box")


def flipped(path: Path, destination: Path) -> Path:
    """A copy of `path` with one bit of its media data flipped."""
    data = bytearray(path.read_bytes())
    data[mdat_offset(path) + 100] ^= 0x01
    destination.write_bytes(data)
    return destination


NOWHERE = Path("/nonexistent/edged-data")  # a data dir with no box certificate to pin to


def verify(path: Path, *extra: str, box: Path = NOWHERE) -> tuple[int, str]:
    """`edged verify` as run on the box whose data dir is `box` (its certificate pinned)."""
    result = run_edged("verify", str(path), "--data-dir", str(box), *extra)
    assert result.stderr == ""
    return result.returncode, result.stdout


def claim(vertical: bool = False) -> ClipClaim:
    return ClipClaim(
        event="gala",
        node="box1",
        stream="cam0",
        device="HDMI capture",
        start=datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC),
        end=datetime(2026, 11, 30, 12, 0, 2, tzinfo=UTC),
        sources=[("20261130T120000Z-000001-000000.mp4", "ab" * 32)],
        vertical=vertical,
        title="The toast",
    )


@pytest.fixture
def identity(tmp_path: Path) -> SigningIdentity:
    (tmp_path / "data").mkdir(mode=0o700)  # the daemon's data dir exists before the identity
    return load_identity(ProvenanceConfig(), tmp_path / "data", "box1")


@pytest.fixture
def signed_clip(tmp_path: Path, identity: SigningIdentity) -> Path:
    source = make_clip(tmp_path / "cut.mp4", seconds=1.5, size="160x120", audio=True)
    dest = tmp_path / "clip.mp4"
    sign_clip(source, dest, claim(vertical=True), identity)
    return dest


def test_a_signed_clip_verifies_and_one_flipped_byte_fails(
    tmp_path: Path, signed_clip: Path
) -> None:
    box = tmp_path / "data"
    code, out = verify(signed_clip, box=box)
    assert code == 0, out
    assert out.startswith("clip.mp4: C2PA manifest valid\n")
    assert "signed by CN=edged box1, O=edged self-made (untrusted) (this box's own key)" in out
    assert "claim generator edged/" in out
    assert "node box1, event gala" in out
    assert "stream cam0, device HDMI capture" in out
    assert f"ingredient 20261130T120000Z-000001-000000.mp4 (sha256:{'ab' * 32})" in out
    assert "org.edged.capture" in out
    assert "c2pa.actions" in out

    code, out = verify(flipped(signed_clip, tmp_path / "tampered.mp4"), box=box)
    assert code == 1
    assert out.startswith("tampered.mp4: C2PA manifest MISMATCH\n")
    assert "problem: assertion.bmffHash.mismatch" in out


def test_the_clip_cache_keeps_a_signed_clip_byte_for_byte(
    tmp_path: Path, signed_clip: Path
) -> None:
    """The cache's fast start would remux the clip and drop its manifest: a signed clip is
    already prepared (the clip worker prepares, then signs), so its bytes are kept."""
    prepared = prepare(signed_clip, tmp_path / "cached.mp4")
    assert (tmp_path / "cached.mp4").read_bytes() == signed_clip.read_bytes()
    assert prepared.head_size == head_size(signed_clip)
    code, out = verify(tmp_path / "cached.mp4", box=tmp_path / "data")
    assert code == 0, out


def test_a_clip_signed_with_the_crews_certificate_is_trusted_with_its_ca(tmp_path: Path) -> None:
    cert_file, key_file, anchor = write_crew_identity(tmp_path / "crew")
    config = ProvenanceConfig(cert_file=str(cert_file), key_file=str(key_file))
    crew = load_identity(config, tmp_path, "box1")
    source = make_clip(tmp_path / "cut.mp4", seconds=1.0, size="160x120")
    sign_clip(source, tmp_path / "clip.mp4", claim(), crew)
    code, out = verify(tmp_path / "clip.mp4", "--trust-anchors", str(anchor))
    assert code == 0, out
    assert "signed by CN=Crew box signer (trusted: its chain ends at a given trust anchor)" in out
    code, out = verify(tmp_path / "clip.mp4")  # no anchor and no box certificate to pin to
    assert code == 1, out
    assert "problem: signer not verified: give --trust-anchors PEM" in out
    code, out = verify(tmp_path / "clip.mp4", "--any-signer")
    assert code == 0, out
    assert "(not checked (--any-signer): an unknown key)" in out


def test_a_clip_signed_by_another_self_made_key_is_refused(
    tmp_path: Path, identity: SigningIdentity
) -> None:
    """A forger's own self-made identity: the same names as the box's, another key."""
    (tmp_path / "forger").mkdir(mode=0o700)
    forger = load_identity(ProvenanceConfig(), tmp_path / "forger", "box1")
    assert forger.subject == identity.subject
    source = make_clip(tmp_path / "cut.mp4", seconds=1.0, size="160x120")
    forged = tmp_path / "forged.mp4"
    sign_clip(source, forged, claim(), forger)
    box = tmp_path / "data"
    code, out = verify(forged, box=box)
    assert code == 1, out
    assert out.startswith("forged.mp4: C2PA manifest MISMATCH\n")
    assert "problem: signed by an unknown key" in out
    box_crt = box / PROVENANCE_DIR / CERT_FILE
    code, out = verify(forged, "--trust-anchors", str(box_crt))
    assert code == 1, out
    assert "problem: signed by an unknown key" in out
    code, out = verify(forged, "--any-signer", box=box)
    assert code == 0, out  # intact, whoever signed it, and said so
    assert "(not checked (--any-signer): an unknown key)" in out


def test_a_sidecar_signed_by_another_self_made_key_is_refused(
    tmp_path: Path, identity: SigningIdentity
) -> None:
    (tmp_path / "forger").mkdir(mode=0o700)
    forger = load_identity(ProvenanceConfig(), tmp_path / "forger", "box1")
    segment = make_clip(tmp_path / "seg.mp4", seconds=0.5, size="160x120")
    document = {
        "file": "seg.mp4",
        "sha256": file_sha256(segment),
        "size": segment.stat().st_size,
        "start": "2026-11-30T12:00:00+00:00",
        "end": "2026-11-30T12:00:01+00:00",
        "device": "a different camera",
        "node": "box1",
        "event": "gala",
        "stream": "cam0",
    }
    box = tmp_path / "data"
    sidecar = segment.with_suffix(".json")
    sidecar.write_text(json.dumps(signed(document, identity)))
    assert verify(segment, box=box)[0] == 0
    sidecar.write_text(json.dumps(signed(document, forger)))
    for extra in ((), ("--trust-anchors", str(box / PROVENANCE_DIR / CERT_FILE))):
        code, out = verify(segment, *extra, box=box)
        assert code == 1, out
        assert "MISMATCH" in out
        assert "problem: signed by an unknown key" in out


def test_a_clip_that_cannot_be_signed_leaves_nothing(
    tmp_path: Path, identity: SigningIdentity
) -> None:
    source = tmp_path / "not-a-video.mp4"
    source.write_bytes(b"\x00" * 4096)
    with pytest.raises(MediaError, match=r"cannot sign clip clip\.mp4"):
        sign_clip(source, tmp_path / "clip.mp4", claim(), identity)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "not-a-video.mp4"]


def test_the_clip_jobs_seam_signs_from_the_sidecar_facts(
    tmp_path: Path, identity: SigningIdentity
) -> None:
    source = make_clip(tmp_path / "cut.mp4", seconds=1.0, size="160x120")
    facts = {
        "variant": "original",
        "stream": "cam0",
        "node": "box1",
        "event": "gala",
        "start": "2026-11-30T12:00:00.000Z",
        "end": "2026-11-30T12:00:01.000Z",
        "sources": [{"file": "seg.mp4", "sha256": "cd" * 32}],
    }
    ClipSigner(identity)(source, tmp_path / "clip.mp4", facts, {"node": "box1"})
    code, out = verify(tmp_path / "clip.mp4", box=tmp_path / "data")
    assert code == 0, out
    assert f"ingredient seg.mp4 (sha256:{'cd' * 32})" in out
    assert "captured 2026-11-30T12:00:00+00:00 to 2026-11-30T12:00:01+00:00" in out


def test_an_unsigned_file_fails(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "plain.mp4", seconds=0.5, size="160x120")
    code, out = verify(clip)
    assert code == 1
    assert out == "plain.mp4: no C2PA manifest and no sidecar plain.json\n"


def record(start_daemon: StartDaemon, settings: dict[str, object] | None = None) -> Path:
    """A daemon records the test pattern until a segment closes; its first segment, stopped."""
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "node": {"name": "box1", "event": "gala"},
            "media": {
                "pattern_size": "320x240",
                "segment_seconds": 1.0,
                "record_test_pattern": True,
            },
            **(settings or {}),
        }
    )
    assert daemon.data_dir is not None
    name = daemon.wait_for(RECORDED, timeout=30)["name"]
    assert daemon.stop(timeout=30) == 0
    return daemon.data_dir / "spool" / "test-pattern" / name


def test_a_recording_verifies_against_its_signed_sidecar_and_fails_when_changed(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    segment = record(start_daemon)
    folder = segment.parents[2] / PROVENANCE_DIR
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE((folder / n).stat().st_mode) for n in (KEY_FILE, CERT_FILE)} == {0o600}
    sidecar = segment.with_suffix(".json")
    assert json.loads(sidecar.read_text())["signature"]["algorithm"] == "Ed25519"

    box = segment.parents[2]
    code, out = verify(segment, box=box)
    assert code == 0, out
    assert out.startswith(f"{segment.name}: matches its signed sidecar {sidecar.name}\n")
    assert "signed by O=edged self-made (untrusted),CN=edged box1 (this box's own key)" in out
    assert "node box1, event gala" in out
    assert verify(sidecar, box=box)[0] == 0  # the sidecar named instead of the recording

    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(sidecar, copy / sidecar.name)
    code, out = verify(flipped(segment, copy / segment.name), box=box)
    assert code == 1
    assert "MISMATCH" in out
    assert "problem: the recording's sha256 is not the sidecar's" in out

    shutil.copy(segment, copy / segment.name)
    document = json.loads(sidecar.read_text())
    document["start"] = "2020-01-01T00:00:00+00:00"
    (copy / sidecar.name).write_text(json.dumps(document))
    code, out = verify(copy / segment.name, box=box)
    assert code == 1
    assert "problem: the signature does not match the sidecar" in out


def test_a_recording_recovered_after_a_crash_is_signed_too(start_daemon: StartDaemon) -> None:
    settings: dict[str, dict[str, object]] = {
        "mdns": {"enabled": False},
        "media": {
            "pattern_size": "320x240",
            "segment_seconds": 60.0,
            "gop_seconds": 0.5,
            "record_test_pattern": True,
        },
    }
    daemon = start_daemon(settings)
    assert daemon.data_dir is not None
    spool = daemon.data_dir / "spool" / "test-pattern"
    until(lambda: whole_fragments(spool) >= 2, what="two fragments on disk")
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)

    again = start_daemon(settings)
    final = Path(again.seen_or_wait(re.compile(r"recovered (\S+) after a crash"))[1])
    assert again.stop(timeout=30) == 0
    code, out = verify(final, box=final.parents[2])
    assert code == 0, out
    assert json.loads(final.with_suffix(".json").read_text())["recovered"] is True


def download(server: MotoProcess, key: str, destination: Path) -> Path:
    response = minio_client(server).get_object(BUCKET, key)
    try:
        destination.write_bytes(response.read())
    finally:
        response.close()
        response.release_conn()
    return destination


def keys(server: MotoProcess) -> list[str]:
    client = minio_client(server)
    return [str(item.object_name) for item in client.list_objects(BUCKET, recursive=True)]


def test_upstream_copies_verify_and_fail_when_a_byte_flips(
    start_daemon: StartDaemon, moto: MotoProcess, tmp_path: Path, signed_clip: Path
) -> None:
    upstream = upstream_settings(tmp_path, moto)
    segment = record(start_daemon, {"upstream": upstream})
    # The recording went up with its signed sidecar: the signature travels inside it.
    sidecar_key = until(
        lambda: next(
            (k for k in keys(moto) if k.endswith(segment.with_suffix(".json").name)), None
        ),
        what="the sidecar upstream",
    )
    down = tmp_path / "down"
    down.mkdir()
    download(moto, sidecar_key, down / segment.with_suffix(".json").name)
    download(moto, sidecar_key.removesuffix(".json") + ".mp4", down / segment.name)
    assert verify(down / segment.name, box=segment.parents[2])[0] == 0

    daemon_dir = segment.parents[2]
    config = daemon_dir.parent / "box.toml"
    pushed = run_edged(
        "uploads", "push", str(signed_clip), "--kind", "clip", "--stream", "clips",
        "--config", str(config), "--data-dir", str(daemon_dir),
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    (clip_key,) = [k for k in keys(moto) if k.endswith("/clip.mp4")]
    downloaded = download(moto, clip_key, down / "clip.mp4")
    assert verify(downloaded, box=tmp_path / "data")[0] == 0
    code, out = verify(flipped(downloaded, down / "clip-flipped.mp4"), box=tmp_path / "data")
    assert code == 1
    assert "C2PA manifest MISMATCH" in out
