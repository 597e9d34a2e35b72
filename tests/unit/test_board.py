"""Board detection on fixture trees, one per profile, and profile files with errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.devices import detect_board, hardware_dir
from edged.devices.board import (
    BUILTIN_FALLBACK,
    ProfileError,
    load_profile,
    load_profiles,
    read_facts,
)


def fixture_root(
    tmp_path: Path, *, model: str = "", compatible: tuple[str, ...] = (), msenc: bool = False
) -> Path:
    root = tmp_path / "root"
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "sys/firmware/devicetree/base").mkdir(parents=True)
    (root / "dev").mkdir()
    if model:
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if compatible:
        (root / "sys/firmware/devicetree/base/compatible").write_bytes(
            b"\x00".join(item.encode() for item in compatible) + b"\x00"
        )
    if msenc:
        (root / "dev/nvhost-msenc").touch()
    return root


@pytest.mark.parametrize(
    ("model", "compatible", "msenc", "machine", "profile"),
    [
        (
            "Raspberry Pi 4 Model B Rev 1.5",
            ("raspberrypi,4-model-b", "brcm,bcm2711"),
            False,
            "aarch64",
            "rpi4",
        ),
        (
            "Raspberry Pi 5 Model B Rev 1.0",
            ("raspberrypi,5-model-b", "brcm,bcm2712"),
            False,
            "aarch64",
            "rpi5",
        ),
        (
            "NVIDIA Jetson Orin Nano Developer Kit",
            ("nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"),
            False,
            "aarch64",
            "jetson-orin-nano",
        ),
        (
            "NVIDIA Jetson AGX Orin Developer Kit",
            ("nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"),
            True,
            "aarch64",
            "jetson-orin",
        ),
        ("", (), False, "x86_64", "x86"),
        (
            "Pine64 RockPro64 v2.1",
            ("pine64,rockpro64-v2.1", "rockchip,rk3399"),
            False,
            "aarch64",
            "generic",
        ),
    ],
)
def test_each_profile_on_its_tree(
    tmp_path: Path,
    model: str,
    compatible: tuple[str, ...],
    msenc: bool,
    machine: str,
    profile: str,
) -> None:
    root = fixture_root(tmp_path, model=model, compatible=compatible, msenc=msenc)
    facts = read_facts(root, machine=machine)
    assert facts.model == model
    from edged.devices.board import select_profile

    board = select_profile(facts, load_profiles(hardware_dir() / "boards")[0])
    assert board.profile.id == profile, board.reason


def test_unknown_board_says_so(tmp_path: Path) -> None:
    root = fixture_root(tmp_path, model="Pine64 RockPro64 v2.1")
    facts = read_facts(root, machine="aarch64")
    from edged.devices.board import select_profile

    board = select_profile(facts, load_profiles(hardware_dir() / "boards")[0])
    assert board.profile.id == "generic"
    assert board.reason == (
        "unknown board (Pine64 RockPro64 v2.1, aarch64): using the generic profile"
    )


def test_agx_orin_without_encoder_device_is_not_the_encoder_profile(tmp_path: Path) -> None:
    root = fixture_root(tmp_path, model="NVIDIA Jetson AGX Orin", msenc=False)
    board = detect_board(root, [])
    assert board.profile.id != "jetson-orin"


def test_pi4_known_by_its_isp_node_alone(tmp_path: Path) -> None:
    board = detect_board(fixture_root(tmp_path), ["bcm2835-isp-capture1"])
    assert board.profile.id == "rpi4"
    assert board.reason == "V4L2 device 'bcm2835-isp-capture1' present"


def test_every_shipped_profile_has_defaults_and_limits() -> None:
    profiles, problems = load_profiles(hardware_dir() / "boards")
    assert problems == []
    assert {p.id for p in profiles} >= {
        "rpi4",
        "rpi5",
        "jetson-orin-nano",
        "jetson-orin",
        "x86",
        "generic",
    }
    for profile in profiles:
        assert profile.encoders[-1] == "libx264"
        assert profile.defaults["webcam"].fps > 0
        assert profile.soft_limit_celsius < profile.hard_limit_celsius


GOOD = (hardware_dir() / "boards" / "generic.toml").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[board\n", "cannot read board profile"),
        (GOOD.replace('h264 = ["libx264"]', "h264 = []"), "encoders.h264 must name at least one"),
        (GOOD.replace("fps = 30", 'fps = "thirty"', 1), "defaults.webcam.fps: must be a positive"),
        (GOOD.replace("[thermal]", "[thermals]"), "missing table [thermal]"),
        (GOOD.replace('id = "generic"', "id = 3"), "board.id must be a non-empty string"),
        (
            GOOD.replace("soft_limit_celsius = 75.0", "soft_limit_celsius = 99.0"),
            "hard_limit_celsius 85.0 is below the soft limit",
        ),
    ],
)
def test_profile_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    with pytest.raises(ProfileError) as raised:
        load_profile(broken)
    assert message in str(raised.value)
    assert "broken.toml" in str(raised.value)
    # The box still runs: the broken file is skipped and reported, the others load.
    (tmp_path / "x86.toml").write_text((hardware_dir() / "boards" / "x86.toml").read_text())
    profiles, problems = load_profiles(tmp_path)
    assert [problem for problem in problems if message in problem]
    assert "x86" in {profile.id for profile in profiles}


def test_without_fallback_the_builtin_generic_is_used(tmp_path: Path) -> None:
    (tmp_path / "x86.toml").write_text((hardware_dir() / "boards" / "x86.toml").read_text())
    profiles, problems = load_profiles(tmp_path)
    assert "no fallback profile" in problems[0]
    assert profiles[-1] is BUILTIN_FALLBACK
