"""Config loading and validation: pure, fast."""

from __future__ import annotations

import dataclasses
import string
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged import config
from edged.config import Config, ConfigError, GiB, MiB
from edged.paths import resource_dir


def test_documented_defaults_are_the_embedded_defaults() -> None:
    path = resource_dir("configs") / "edged.toml"
    assert config.load(path) == Config()


def test_the_timeouts_default_to_the_servers_own() -> None:
    """[http] idle_timeout and [live] ice_timeout default to what the servers take alone."""
    from edged.media.webrtc import ICE_TIMEOUT
    from edged.web.app import IDLE_TIMEOUT

    assert (Config().http.idle_timeout, Config().live.ice_timeout) == (IDLE_TIMEOUT, ICE_TIMEOUT)


def test_every_key_is_documented() -> None:
    document = tomllib.loads((resource_dir("configs") / "edged.toml").read_text())
    assert {section: set(values) for section, values in document.items()} == {
        section: set(values) for section, values in config.to_mapping(Config()).items()
    }


def test_design_keys_exist() -> None:
    """The sections and keys DESIGN.md promises."""
    promised = {
        "node": {"name", "event"},
        "http": {"host", "port", "admin_token_file"},
        "media": {"test_pattern", "gop_seconds", "segment_seconds"},
        "storage": {"min_free_bytes", "delete_unuploaded"},
        "cache": {"max_bytes", "manifest"},
        "upstream": {
            "endpoint",
            "secure",
            "region",
            "bucket",
            "prefix",
            "access_key",
            "secret_key_file",
            "sts_role_arn",
        },
        "upload": {"part_size", "parallel_parts", "bandwidth_limit"},
    }
    actual = config.to_mapping(Config())
    for section, keys in promised.items():
        assert keys <= set(actual[section]), section


def test_values_are_converted() -> None:
    loaded = config.from_mapping(
        {
            "http": {"port": 9000},
            "media": {"gop_seconds": 2},
            "storage": {"min_free_bytes": "1.5GiB"},
            "mdns": {"interfaces": ["10.0.0.2"]},
        }
    )
    assert loaded.http.port == 9000
    assert loaded.media.gop_seconds == 2.0
    assert isinstance(loaded.media.gop_seconds, float)
    assert loaded.storage.min_free_bytes == int(1.5 * GiB)
    assert loaded.mdns.interfaces == ("10.0.0.2",)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"nod": {}}, "[nod]: unknown section"),
        ({"node": "x"}, "[node] must be a table"),
        ({"node": {"nmae": "x"}}, "node.nmae: unknown key"),
        ({"node": {"event": "../etc"}}, "node.event = '../etc': not allowed"),
        ({"node": {"event": ""}}, "node.event = '': not allowed"),
        ({"http": {"port": True}}, "http.port = True: must be an integer"),
        ({"http": {"port": -1}}, "http.port = -1: must be at least 0"),
        ({"mdns": {"enabled": "yes"}}, "mdns.enabled = 'yes': must be true or false"),
        ({"mdns": {"interfaces": "eth0"}}, "mdns.interfaces = 'eth0': must be a list of strings"),
        ({"upload": {"parallel_parts": 0}}, "upload.parallel_parts = 0: must be at least 1"),
        ({"upload": {"part_size": "4MiB"}}, "upload.part_size = 4194304: must be at least"),
        ({"upstream": {"endpoint": "https://s3"}}, "upstream.endpoint = 'https://s3'"),
        ({"upstream": {"bucket": "Bad_Bucket"}}, "upstream.bucket = 'Bad_Bucket'"),
        ({"daemon": {"log_level": "loud"}}, "must be one of 'debug', 'info'"),
        ({"http": {"idle_timeout": 0}}, "http.idle_timeout = 0.0: must be at least 0.5"),
        ({"http": {"idle_timeout": 601}}, "http.idle_timeout = 601.0: must be at most 600"),
        ({"live": {"ice_timeout": -1}}, "live.ice_timeout = -1.0: must be at least 0.5"),
        ({"live": {"ice_timeout": 121}}, "live.ice_timeout = 121.0: must be at most 120"),
    ],
)
def test_invalid_values_name_the_key(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert message in str(raised.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_text("[http]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"edged\.toml: http\.port = 70000: must be at most"):
        config.load(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(path)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Windows editors (Notepad) save UTF-8 with a BOM; TOML's parser calls it an invalid
    statement (issue #21 item 12)."""
    path = tmp_path / "edged.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[node]\nname = "tent"\nevent = "gala"\n')
    loaded = config.load(path)
    assert (loaded.node.name, loaded.node.event) == ("tent", "gala")
    path.write_bytes(b"\xef\xbb\xbf")
    assert config.load(path) == Config()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_is_named(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "edged.toml"
    path.write_bytes("\ufeff[node]\n".encode(encoding))
    with pytest.raises(ConfigError, match=r"edged\.toml: config file is UTF-16 .*not UTF-8"):
        config.load(path)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "B", "KiB", "MiB", "GiB"]))
def test_sizes_parse_in_their_unit(number: int, unit: str) -> None:
    factor = {"": 1, "B": 1, "KiB": 1024, "MiB": MiB, "GiB": GiB}[unit]
    assert config.parse_size(f"{number}{unit}", "k") == number * factor
    assert config.parse_size(f"{number} {unit.lower()}", "k") == number * factor


@given(st.text(alphabet=string.punctuation.replace(".", "") + "xyz \t", min_size=1))
def test_nonsense_sizes_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"cache\.max_bytes = .*: not a size"):
        config.parse_size(text, "cache.max_bytes")


def test_overrides_are_validated() -> None:
    assert config.with_overrides(Config(), {"http.port": 0}).http.port == 0
    with pytest.raises(ConfigError, match=r"http\.port = 70000"):
        config.with_overrides(Config(), {"http.port": 70000})


def test_changed_keys() -> None:
    old = Config()
    new = dataclasses.replace(old, node=dataclasses.replace(old.node, event="gala"))
    assert config.changed_keys(old, new) == ["node.event"]
    assert config.changed_keys(old, old) == []


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().http.port = 1  # type: ignore[misc]
