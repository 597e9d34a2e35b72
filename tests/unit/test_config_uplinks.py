"""`[[upload.uplinks]]` and `[upload] bandwidth_schedule`: parsed, checked, clear refusals."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from edged import config
from edged.config import Config, ConfigError, GiB, UplinkConfig
from edged.upload.classes import UploadClass

DOCUMENT = """
[upload]
bandwidth_limit = "1MiB"
bandwidth_schedule = { "10:00-22:00" = "2Mbit", "22:00-06:00" = 0, "06:00-10:00" = "256KiB" }

[[upload.uplinks]]
match = "wwan*"
metered = true
daily_budget = "2GiB"

[[upload.uplinks]]
match = "eth0"
classes = ["recording", "manifest"]
"""


def test_uplinks_and_schedule_are_read() -> None:
    upload = config.from_mapping(tomllib.loads(DOCUMENT)).upload
    assert upload.uplinks == (
        UplinkConfig(match="wwan*", metered=True, daily_budget=2 * GiB),
        UplinkConfig(match="eth0", classes=("recording", "manifest")),
    )
    assert upload.bandwidth_schedule == {
        "10:00-22:00": 250_000,
        "22:00-06:00": 0,
        "06:00-10:00": 256 * 1024,
    }


def test_no_uplinks_is_the_default_and_changes_nothing() -> None:
    assert Config().upload.uplinks == ()
    assert Config().upload.bandwidth_schedule == {}
    assert config.from_mapping({"upload": {"parallel_parts": 3}}).upload.uplinks == ()


def test_the_class_names_are_the_upload_classes() -> None:
    assert tuple(cls.value for cls in UploadClass) == config.UPLOAD_CLASSES


def test_uplinks_change_as_one_key() -> None:
    old = Config()
    new = config.from_mapping(tomllib.loads(DOCUMENT))
    assert set(config.changed_keys(old, new)) == {
        "upload.uplinks",
        "upload.bandwidth_schedule",
        "upload.bandwidth_limit",
    }
    assert config.to_mapping(new)["upload"]["uplinks"][0]["match"] == "wwan*"


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ({"uplinks": "wwan0"}, "upload.uplinks = 'wwan0': must be a list of tables"),
        ({"uplinks": [{"metered": True}]}, "upload.uplinks[0]: no match; name an interface"),
        ({"uplinks": [{"match": "a b"}]}, "upload.uplinks[0].match = 'a b': not allowed"),
        (
            {"uplinks": [{"match": "eth0"}, {"match": "wwan0", "metred": True}]},
            "upload.uplinks[1].metred: unknown key",
        ),
        (
            {"uplinks": [{"match": "wwan0", "daily_budget": "lots"}]},
            "upload.uplinks[0].daily_budget = 'lots': not a size",
        ),
        (
            {"uplinks": [{"match": "wwan0", "classes": ["clips"]}]},
            "upload.uplinks[0].classes = 'clips': must be one of 'guest', 'clip'",
        ),
        (
            {"uplinks": [{"match": "wwan0", "metered": "yes"}]},
            "upload.uplinks[0].metered = 'yes': must be true or false",
        ),
        ({"bandwidth_schedule": "2Mbit"}, "upload.bandwidth_schedule = '2Mbit': must be a table"),
        (
            {"bandwidth_schedule": {"10-22": "2Mbit"}},
            'upload.bandwidth_schedule."10-22": not a window',
        ),
        (
            {"bandwidth_schedule": {"25:00-02:00": 0}},
            'upload.bandwidth_schedule."25:00-02:00": not a window',
        ),
        (
            {"bandwidth_schedule": {"10:00-10:00": 0}},
            'upload.bandwidth_schedule."10:00-10:00": starts where it ends',
        ),
        (
            {"bandwidth_schedule": {"10:00-22:00": "fast"}},
            "upload.bandwidth_schedule.\"10:00-22:00\" = 'fast': not a rate",
        ),
    ],
)
def test_bad_uplinks_are_refused_naming_the_key(upload: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping({"upload": upload})
    assert message in str(raised.value)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["bit", "kbit", "Mbit", "Gbit"]))
def test_bit_rates_are_bytes_per_second(number: int, unit: str) -> None:
    factor = {"bit": 1, "kbit": 1000, "Mbit": 10**6, "Gbit": 10**9}[unit]
    assert config.parse_rate(f"{number}{unit}", "k") == number * factor // 8
    assert config.parse_rate(f"{number} {unit}/s", "k") == number * factor // 8
    assert config.parse_rate(number, "k") == number


def test_edged_config_prints_uplinks_that_read_back_the_same() -> None:
    loaded = config.from_mapping(tomllib.loads(DOCUMENT))
    printed = tomli_w.dumps(config.to_mapping(loaded))
    assert "[[upload.uplinks]]" in printed
    assert config.from_mapping(tomllib.loads(printed)) == loaded
    assert (
        config.from_mapping(tomllib.loads(tomli_w.dumps(config.to_mapping(Config())))) == Config()
    )
