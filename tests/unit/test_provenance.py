"""The pure parts of provenance: a claim's manifest, a sidecar's canonical bytes and signature,
the box's identity on disk, and how c2pa's validation results are read."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from edged.config import ProvenanceConfig
from edged.errors import ConfigError, StartupError
from edged.fileio import file_sha256
from edged.provenance import ClipClaim, SigningIdentity, load_identity
from edged.provenance.claim import CAPTURE_LABEL, claim_from_sidecar, manifest_definition
from edged.provenance.clip import clip_check_from
from edged.provenance.identity import CERT_FILE, KEY_FILE, PROVENANCE_DIR
from edged.provenance.sidecar import (
    NotCanonical,
    canonical_bytes,
    check_segment,
    check_signature,
    same_key,
    signed,
)
from edged.provenance.verify import NOT_VERIFIED, UNKNOWN_KEY, Trust, signer_problem, trust_text
from tests.certs import write_crew_identity

START = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
END = datetime(2026, 11, 30, 12, 0, 20, tzinfo=UTC)


def claim(**changes: Any) -> ClipClaim:
    values: dict[str, Any] = {
        "event": "gala",
        "node": "box1",
        "stream": "cam0",
        "device": "HDMI capture",
        "start": START,
        "end": END,
        "sources": [("a.mp4", "aa" * 32), ("b.mp4", "bb" * 32)],
        "title": "The toast",
    }
    return ClipClaim(**{**values, **changes})


def actions(definition: dict[str, Any]) -> list[str]:
    (assertion,) = [a for a in definition["assertions"] if a["label"] == "c2pa.actions"]
    return [action["action"] for action in assertion["data"]["actions"]]


def test_a_claim_becomes_generator_capture_ingredients_and_actions() -> None:
    definition = manifest_definition(claim(), "1.2.3")
    assert definition["claim_generator_info"] == [{"name": "edged", "version": "1.2.3"}]
    assert definition["title"] == "The toast"
    (capture,) = [a["data"] for a in definition["assertions"] if a["label"] == CAPTURE_LABEL]
    assert capture == {
        "event": "gala",
        "node": "box1",
        "stream": "cam0",
        "device": "HDMI capture",
        "start": "2026-11-30T12:00:00+00:00",
        "end": "2026-11-30T12:00:20+00:00",
        "sources": [{"name": "a.mp4", "sha256": "aa" * 32}, {"name": "b.mp4", "sha256": "bb" * 32}],
    }
    assert [(i["title"], i["instance_id"]) for i in definition["ingredients"]] == [
        ("a.mp4", "sha256:" + "aa" * 32),
        ("b.mp4", "sha256:" + "bb" * 32),
    ]
    assert actions(definition) == ["c2pa.created"]


def test_a_vertical_variant_is_also_edited_and_cropped() -> None:
    assert actions(manifest_definition(claim(vertical=True), "1")) == [
        "c2pa.created",
        "c2pa.edited",
        "c2pa.cropped",
    ]


def test_a_naive_time_is_utc_and_an_untitled_clip_is_named_by_stream_and_start() -> None:
    definition = manifest_definition(claim(start=datetime(2026, 11, 30, 12), title=""), "1")
    assert definition["title"] == "cam0 2026-11-30T12:00:00+00:00"


def test_a_claim_is_frozen_and_hashable_with_sources_given_as_a_list() -> None:
    first, second = claim(), claim()
    assert first == second
    assert hash(first) == hash(second)
    assert first.sources == (("a.mp4", "aa" * 32), ("b.mp4", "bb" * 32))


def test_a_claim_from_the_clip_jobs_sidecar_facts() -> None:
    facts = {
        "job": 7,
        "variant": "vertical",
        "title": "The toast",
        "stream": "cam0",
        "node": "box1",
        "event": "gala",
        "device": "HDMI capture",
        "start": "2026-11-30T12:00:00.000Z",
        "end": "2026-11-30T12:00:20.000Z",
        "sources": [
            {"file": "a.mp4", "start": "x", "end": "y", "sha256": "aa" * 32},
            {"file": "b.mp4", "start": "x", "end": "y", "sha256": "bb" * 32},
        ],
    }
    assert claim_from_sidecar(facts) == claim(vertical=True)
    assert claim_from_sidecar({**facts, "variant": "original", "device": None}) == claim(
        device="unknown"
    )


SIDECAR = {
    "file": "20261130T120000Z-000001-000000.mp4",
    "sha256": "ab" * 32,
    "size": 1234,
    "start": "2026-11-30T12:00:00+00:00",
    "end": "2026-11-30T12:01:00+00:00",
    "device": "HDMI capture",
    "node": "box1",
    "event": "gala",
    "stream": "cam0",
    "clock_synchronized": None,
}


def test_canonical_bytes_sorted_compact_ascii_and_without_the_signature() -> None:
    document = {"b": 1, "a": "é", "signature": {"value": "x"}}
    assert canonical_bytes(document) == b'{"a":"\\u00e9","b":1}'


@given(st.permutations(list(SIDECAR.items())))
def test_canonical_bytes_do_not_depend_on_key_order(items: list[tuple[str, Any]]) -> None:
    assert canonical_bytes(dict(items)) == canonical_bytes(SIDECAR)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> SigningIdentity:
    return load_identity(ProvenanceConfig(), tmp_path_factory.mktemp("data"), "box1")


def test_a_signed_sidecar_checks_and_names_the_box(identity: SigningIdentity) -> None:
    document = signed(SIDECAR, identity)
    assert {k: v for k, v in document.items() if k != "signature"} == SIDECAR
    check = check_signature(json.loads(json.dumps(document, indent=2)))
    assert check.valid, check.problems
    assert check.signer == "O=edged self-made (untrusted),CN=edged box1"
    assert check.trusted is False
    assert check.leaf == identity.chain[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sha256", "cd" * 32),
        ("start", "2026-11-30T12:00:01+00:00"),
        ("end", "2026-11-30T12:02:00+00:00"),
        ("device", "USB camera"),
        ("event", "other"),
        ("size", 1235),
        ("added", "anything"),
    ],
)
def test_any_edit_breaks_the_signature(identity: SigningIdentity, key: str, value: object) -> None:
    document = signed(SIDECAR, identity)
    document[key] = value
    assert check_signature(document).problems == ("the signature does not match the sidecar",)


def test_an_unsigned_or_mangled_sidecar_is_refused(identity: SigningIdentity) -> None:
    assert check_signature(SIDECAR).problems == ("the sidecar is not signed",)
    document = signed(SIDECAR, identity)
    document["signature"] = {**document["signature"], "value": "not base64!"}
    assert check_signature(document).problems == ("the sidecar's signature is malformed",)
    document["signature"] = {"value": "", "certificates": []}
    assert not check_signature(document).valid


def test_the_box_ca_as_trust_anchor_makes_it_trusted(identity: SigningIdentity) -> None:
    check = check_signature(signed(SIDECAR, identity), anchors=(identity.chain[-1],))
    assert check.valid
    assert check.trusted


def test_the_box_identity_is_made_once_private_and_loaded_again(tmp_path: Path) -> None:
    first = load_identity(ProvenanceConfig(), tmp_path, "box1")
    folder = tmp_path / PROVENANCE_DIR
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (KEY_FILE, CERT_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    again = load_identity(ProvenanceConfig(), tmp_path, "box1")
    assert again.key_pem() == first.key_pem()
    assert (first.self_made, first.algorithm) == (True, "Ed25519")
    leaf, authority = first.chain
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in usage
    assert leaf.issuer == authority.subject != leaf.subject  # c2pa refuses a self-signed one
    leaf.verify_directly_issued_by(authority)


def test_cert_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"provenance\.key_file is empty"):
        load_identity(ProvenanceConfig(cert_file="/x.crt"), tmp_path, "box1")


def test_a_configured_ecdsa_identity_is_used_and_checked(tmp_path: Path) -> None:
    cert_file, key_file, anchor = write_crew_identity(tmp_path / "crew")
    config = ProvenanceConfig(cert_file=str(cert_file), key_file=str(key_file))
    configured = load_identity(config, tmp_path, "box1")
    assert (configured.self_made, configured.algorithm) == (False, "ES256")
    assert not (tmp_path / PROVENANCE_DIR).exists()
    check = check_signature(
        signed(SIDECAR, configured),
        anchors=tuple(x509.load_pem_x509_certificates(anchor.read_bytes())),
    )
    assert (check.valid, check.trusted) == (True, True)
    assert check.signer == "CN=Crew box signer"
    other = ec.generate_private_key(ec.SECP256R1())
    key_file.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(StartupError, match="is not the key of the first certificate"):
        load_identity(config, tmp_path, "box1")
    key_file.chmod(0o644)
    with pytest.raises(StartupError, match="readable by others"):
        load_identity(config, tmp_path, "box1")


RESULTS_UNTRUSTED = {
    "activeManifest": {
        "failure": [{"code": "signingCredential.untrusted", "explanation": "untrusted"}]
    }
}
MANIFEST = {
    "claim_generator_info": [{"name": "edged", "version": "0.1.0"}],
    "signature_info": {"common_name": "edged box1", "issuer": "edged self-made (untrusted)"},
    "assertions": [{"label": CAPTURE_LABEL, "data": {"event": "gala"}}],
    "ingredients": [{"title": "a.mp4", "instance_id": "sha256:aa"}],
}


def test_c2pa_untrusted_alone_is_valid_any_other_failure_is_a_mismatch() -> None:
    check = clip_check_from(MANIFEST, "Valid", RESULTS_UNTRUSTED)
    assert (check.valid, check.trusted) == (True, False)
    assert check.signer == "CN=edged box1, O=edged self-made (untrusted)"
    assert check.generator == "edged/0.1.0"
    assert check.capture == {"event": "gala"}
    assert check.ingredients == ("a.mp4 (sha256:aa)",)
    tampered = {
        "activeManifest": {
            "failure": [
                *RESULTS_UNTRUSTED["activeManifest"]["failure"],
                {"code": "assertion.bmffHash.mismatch", "explanation": "hash mismatch"},
            ]
        }
    }
    check = clip_check_from(MANIFEST, "Invalid", tampered)
    assert not check.valid
    assert check.failures == ("assertion.bmffHash.mismatch: hash mismatch",)
    assert clip_check_from(MANIFEST, "Trusted", {}).trusted


def test_a_reader_without_a_validation_state_is_not_valid() -> None:
    assert not clip_check_from(MANIFEST, None, {}).valid
    assert not clip_check_from(MANIFEST, "Invalid", {}).valid


def test_a_second_self_made_identity_with_the_same_names_is_an_unknown_key(
    identity: SigningIdentity, tmp_path: Path
) -> None:
    forger = load_identity(ProvenanceConfig(), tmp_path, "box1")
    assert forger.subject == identity.subject  # the same names: only the key tells them apart
    check = check_signature(signed(SIDECAR, forger))
    assert check.valid and check.leaf is not None  # intact: the signature matches its own key
    box = Trust(box=identity.chain)
    assert not same_key(check.leaf, identity.chain[0])
    assert signer_problem(check.trusted, False, box) == UNKNOWN_KEY
    anchored = check_signature(signed(SIDECAR, forger), anchors=(identity.chain[-1],))
    assert anchored.trusted is False
    assert signer_problem(False, False, Trust(anchors=(identity.chain[-1],))) == UNKNOWN_KEY


def test_who_is_accepted_as_signer(identity: SigningIdentity) -> None:
    box = Trust(box=identity.chain)
    anchors = Trust(anchors=identity.chain[-1:])
    assert signer_problem(False, True, box) is None  # this box's own key
    assert signer_problem(True, False, anchors) is None  # under a given anchor
    assert signer_problem(True, False, box) == UNKNOWN_KEY  # the box's CA, not its key
    assert signer_problem(False, False, anchors) == UNKNOWN_KEY
    assert signer_problem(False, False, Trust()) == NOT_VERIFIED  # nothing to pin to
    assert signer_problem(False, False, Trust(any_signer=True)) is None
    assert trust_text(False, False, Trust(any_signer=True)).startswith("not checked")


@pytest.mark.parametrize("lost", [CERT_FILE, KEY_FILE])
def test_half_an_identity_stops_the_start_and_keeps_the_key(tmp_path: Path, lost: str) -> None:
    first = load_identity(ProvenanceConfig(), tmp_path, "box1")
    folder = tmp_path / PROVENANCE_DIR
    kept = {name: (folder / name).read_bytes() for name in (CERT_FILE, KEY_FILE) if name != lost}
    (folder / lost).unlink()
    with pytest.raises(StartupError, match=f"{lost} is missing beside"):
        load_identity(ProvenanceConfig(), tmp_path, "box1")
    assert {name: (folder / name).read_bytes() for name in kept} == kept  # not replaced
    assert not (folder / lost).exists()
    assert first.key_pem()


def test_the_canonical_form_escapes_and_sorts_as_documented() -> None:
    document = {"z": [1, True, None], "a": 'é\n"\\ \U0001f3a5', "m": {"b": -3, "a": "x"}}
    assert canonical_bytes(document) == (
        b'{"a":"\\u00e9\\n\\"\\\\ \\ud83c\\udfa5","m":{"a":"x","b":-3},"z":[1,true,null]}'
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (1.5, "size is a number that is not an integer"),
        (float("nan"), "size is a number that is not an integer"),
        (2**53, "size is an integer past 2^53 - 1"),
    ],
)
def test_a_value_outside_the_canonical_form_is_never_signed(
    identity: SigningIdentity, value: object, problem: str
) -> None:
    with pytest.raises(NotCanonical, match=re.escape(problem)):
        signed({**SIDECAR, "size": value}, identity)


def test_a_sidecar_that_repeats_a_key_is_refused(identity: SigningIdentity, tmp_path: Path) -> None:
    """The reviewer's forgery: a second "device" and "start" at the top of a signed sidecar
    verified, since json.loads keeps the last value and the signature covers that one."""
    video = tmp_path / "seg.mp4"
    video.write_bytes(b"\x00" * 1234)
    document = signed({**SIDECAR, "file": "seg.mp4", "sha256": file_sha256(video)}, identity)
    text = json.dumps(document, indent=2)
    sidecar = tmp_path / "seg.json"
    sidecar.write_text(text)
    assert check_segment(video, sidecar).valid
    forged = text.replace(
        "{", '{"device": "a different camera", "start": "2020-01-01T00:00:00+00:00",', 1
    )
    sidecar.write_text(forged)
    assert json.loads(forged)["device"] == SIDECAR["device"]  # a last-wins reader: the signed one
    check = check_segment(video, sidecar)
    assert not check.valid
    assert check.problems == ("the sidecar repeats the key 'device': refused",)
    sidecar.write_text(text.replace('"size": 1234', '"size": NaN'))
    assert check_segment(video, sidecar).problems == (
        "the sidecar holds NaN, which is not JSON: refused",
    )
