"""Configuration: frozen dataclasses, loaded once from TOML and validated key by key.

The defaults written here are the embedded defaults; `configs/edged.toml` documents every key with
the same values, and a test keeps the two in agreement.
"""

from __future__ import annotations

import codecs
import dataclasses
import ipaddress
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": KiB,
    "MIB": MiB,
    "GIB": GiB,
    "TIB": 1024 * GiB,
}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


def setting(
    default: Any,
    *,
    size: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    pattern: str = "",
) -> Any:
    """A config field with the facts its validation needs."""
    metadata = {
        "size": size,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "pattern": pattern,
    }
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata, hash=False)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class NodeConfig:
    name: str = setting("", pattern=f"^$|{_NAME_PATTERN}")
    event: str = setting("default", pattern=_NAME_PATTERN)
    # Cameras and capture cards this box should stream; 0: not said. Fewer streaming (the test
    # pattern shown instead) raises EdgedCamerasMissing.
    expected_cameras: int = setting(0, minimum=0, maximum=64)


@dataclass(frozen=True)
class HttpConfig:
    host: str = "0.0.0.0"  # noqa: S104 - serving the venue LAN is the point
    port: int = setting(8080, minimum=0, maximum=65535)
    admin_token_file: str = ""
    # Seconds a connection may sit without a whole request head (edged.web.app.IDLE_TIMEOUT).
    idle_timeout: float = setting(15.0, minimum=0.5, maximum=600.0)


@dataclass(frozen=True)
class DaemonConfig:
    shutdown_timeout: float = setting(10.0, minimum=0.1, maximum=300.0)
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"))
    event_loop: str = setting("uvloop", choices=("uvloop", "asyncio"))


@dataclass(frozen=True)
class MdnsConfig:
    enabled: bool = True
    interfaces: tuple[str, ...] = setting(())


@dataclass(frozen=True)
class MediaConfig:
    test_pattern: str = setting("auto", choices=("auto", "on", "off"))
    gop_seconds: float = setting(1.0, minimum=0.1, maximum=10.0)
    segment_seconds: float = setting(60.0, minimum=1.0, maximum=3600.0)
    pattern_size: str = setting("1280x720", pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
    pattern_fps: int = setting(30, minimum=1, maximum=120)
    record_test_pattern: bool = False
    v4l2_stand_in: str = ""
    audio_stand_in: str = ""  # a lavfi graph standing in for every stream's sound card


# A stream name (a camera's stream, or the test pattern) -> an ALSA capture device; PyAV's wheels
# open only hw: and plughw: names (no ALSA plugins inside them).
_ALSA_DEVICE = r"^(plug)?hw:[A-Za-z0-9_]+(=[A-Za-z0-9_]+)?(,[A-Za-z0-9_]+(=[A-Za-z0-9_]+)?)*$"
_STREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


@dataclass(frozen=True)
class AudioConfig:
    enabled: bool = True
    sample_rate: int = setting(48000, minimum=8000, maximum=96000)
    bitrate: int = setting(128000, minimum=16000, maximum=512000)
    devices: dict[str, str] = setting({}, pattern=_ALSA_DEVICE)  # noqa: RUF009 - a fresh dict


@dataclass(frozen=True)
class LiveConfig:
    max_viewers: int = setting(20, minimum=1, maximum=500)
    gop_cache: bool = True
    ice_addresses: tuple[str, ...] = setting(())
    # Seconds a WebRTC viewer has to connect after its answer (edged.media.webrtc.ICE_TIMEOUT).
    ice_timeout: float = setting(10.0, minimum=0.5, maximum=120.0)


@dataclass(frozen=True)
class ClipsConfig:
    """Clips cut from the recordings (`POST /api/v1/clips`, `edged clips make`)."""

    max_seconds: float = setting(180.0, minimum=1.0, maximum=3600.0)
    vertical_mode: str = setting("fill", choices=("fill", "crop"))  # when a job names none


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = ""
    min_free_bytes: int = setting(2 * GiB, size=True, minimum=0)
    delete_unuploaded: bool = False


@dataclass(frozen=True)
class CacheConfig:
    max_bytes: int = setting(8 * GiB, size=True, minimum=0)
    manifest: str = ""
    assets_prefix: str = setting("assets", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    recheck_seconds: float = setting(300.0, minimum=5.0, maximum=86400.0)


@dataclass(frozen=True)
class PeersConfig:
    """Boxes of one event on the LAN (mDNS) give each other the manifest's clips."""

    enabled: bool = True  # needs [mdns] enabled and [cache] manifest
    # The event's peer secret (mode 0600), the same on every box of the event; "" = peers off
    # (never the admin token). It signs requests and answers, it is never sent. A peer's listing
    # names staged and exclusive clips, so guests never get it.
    secret_file: str = ""
    recheck_seconds: float = setting(10.0, minimum=1.0, maximum=3600.0)  # while clips are missing


@dataclass(frozen=True)
class UpstreamConfig:
    endpoint: str = setting("", pattern=r"^$|^[^/:\s]+(:\d{1,5})?$")
    secure: bool = True
    region: str = "us-east-1"
    bucket: str = setting("edged", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = setting("", pattern=r"^$|^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    access_key: str = ""
    secret_key_file: str = ""
    sts_role_arn: str = ""


# The classes of edged/upload/classes.py (UploadClass), by name: config imports nothing of upload.
UPLOAD_CLASSES = ("guest", "clip", "manifest", "recording")
_CAP_WINDOW = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"


@dataclass(frozen=True)
class UplinkConfig:
    """One `[[upload.uplinks]]` table: the interfaces it names and what they may carry."""

    match: str = setting("", pattern=r"^[A-Za-z0-9_.:*?\[\]!-]{1,32}$")  # "eth0", "wwan*"
    metered: bool = False
    daily_budget: int = setting(0, size=True, minimum=0)  # bytes a local day, 0 = no budget
    classes: tuple[str, ...] = setting((), choices=UPLOAD_CLASSES)  # () = by `metered`


@dataclass(frozen=True)
class UploadConfig:
    part_size: int = setting(16 * MiB, size=True, minimum=5 * MiB, maximum=5 * GiB)
    parallel_parts: int = setting(2, minimum=1, maximum=16)
    bandwidth_limit: int = setting(0, size=True, minimum=0)
    newest_first: bool = False
    event_retention_days: int = setting(30, minimum=30, maximum=90)
    uplinks: tuple[UplinkConfig, ...] = setting(())
    # "HH:MM-HH:MM" (local time) -> a cap in bytes/s replacing bandwidth_limit then (0 = none)
    bandwidth_schedule: dict[str, int] = setting({}, pattern=_CAP_WINDOW)  # noqa: RUF009


_CAMPAIGN_TAG = r"^[A-Za-z0-9_.-]{0,64}$"
_IPV4 = r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)"
_IP_ADDRESS = rf"^{_IPV4}$|^[0-9A-Fa-f:]*:[0-9A-Fa-f:]*({_IPV4})?$"  # IPv4 or IPv6, no port


@dataclass(frozen=True)
class CampaignConfig:
    """One `[[guest.campaigns]]` table: a pop-up's or partner's tags on the guests' link."""

    name: str = setting("", pattern=_NAME_PATTERN)  # /qr?campaign=<name>; required
    source: str = setting("", pattern=_CAMPAIGN_TAG)  # utm_source
    campaign: str = setting("", pattern=_CAMPAIGN_TAG)  # utm_campaign ("" = the name)
    promo: str = setting("", pattern=r"^[A-Za-z0-9_-]{0,32}$")  # a promo code shown on /join


@dataclass(frozen=True)
class GuestConfig:
    """What guests see and give: the event page, the link and QR, check-in, telemetry."""

    title: str = setting("", pattern=r"^[^\x00-\x1f]{0,80}$")  # "" = the event's name
    accent: str = setting("#e4003a", pattern=r"^#[0-9a-fA-F]{6}$")
    # The guests' link when the box's LAN address is not it (a venue DNS name, a proxy).
    public_url: str = setting("", pattern=r"^$|^https?://[A-Za-z0-9.:\[\]-]+(/[^\s]*)?$")
    wifi_ssid: str = setting("", pattern=r"^[^\x00-\x1f]{0,32}$")  # a join QR on the poster
    wifi_password: str = setting("", pattern=r"^[^\x00-\x1f]{0,63}$")
    campaigns: tuple[CampaignConfig, ...] = setting(())
    captive_portal: bool = False  # answer phones' connectivity probes (the box runs DNS/DHCP)
    consent_text: str = setting(
        "Yes, send me the newsletter. I can unsubscribe at any time.",
        pattern=r"^[^\x00-\x1f]{1,500}$",
    )
    retention_days: int = setting(365, minimum=1, maximum=3650)  # signups kept on the box
    min_retention_10s: float = setting(0.0, minimum=0.0, maximum=1.0)  # 0 = no clip sinks
    min_views: int = setting(20, minimum=1, maximum=1_000_000)
    # Proxies in front of /join and the watch reports (their addresses): from them, a client is
    # X-Forwarded-For's last hop; the proxy must set or append that header.
    trusted_proxies: tuple[str, ...] = setting((), pattern=_IP_ADDRESS)

    def __post_init__(self) -> None:
        for proxy in self.trusted_proxies:  # the pattern lets through ":" and ":::::"
            try:
                ipaddress.ip_address(proxy)
            except ValueError:
                raise ConfigError(
                    f"guest.trusted_proxies = {proxy!r}: not an IP address; give each proxy's "
                    'address ("10.0.0.1", "fd00::1"), no port or network'
                ) from None


@dataclass(frozen=True)
class ProvenanceConfig:
    """The box's signing identity for clips (C2PA) and segment sidecars; both files or neither.

    Neither: a key and a certificate made on first start in the data dir (reported untrusted)."""

    cert_file: str = ""  # PEM: the signing certificate first, then its chain (not the root)
    key_file: str = ""  # PEM (PKCS#8): Ed25519 or ECDSA P-256, mode 0600


_RESTREAM_URL = r"^rtmps?://[A-Za-z0-9.:\[\]-]+/[^\s?#]+$"  # scheme://host[:port]/app[/...]


@dataclass(frozen=True)
class RestreamConfig:
    """One `[[restream]]` table: a stream pushed as it is encoded to an RTMP(S) destination."""

    stream: str = setting("", pattern=_STREAM_NAME)  # required: "test-pattern", "cam-usb-1"
    url: str = setting("", pattern=_RESTREAM_URL)  # required: rtmp(s)://host[:port]/app
    key_file: str = ""  # the stream key, appended to url as its last part; mode 0600
    name: str = setting("", pattern=f"^$|{_NAME_PATTERN}")  # "" = from the host and stream
    enabled: bool = True
    retry_min_seconds: float = setting(1.0, minimum=0.05, maximum=60.0)
    retry_max_seconds: float = setting(30.0, minimum=0.05, maximum=3600.0)
    timeout_seconds: float = setting(10.0, minimum=0.5, maximum=120.0)  # connect and each write
    # rtmps: the server's certificate is checked against these CAs ("" = the system's bundle);
    # tls_verify = false only for a server of your own without a certificate anyone issued.
    tls_verify: bool = True
    ca_file: str = setting("", pattern=r"^[A-Za-z0-9_./-]*$")


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    mdns: MdnsConfig = field(default_factory=MdnsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    peers: PeersConfig = field(default_factory=PeersConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    guest: GuestConfig = field(default_factory=GuestConfig)
    provenance: ProvenanceConfig = field(default_factory=ProvenanceConfig)
    restream: tuple[RestreamConfig, ...] = ()  # [[restream]]: built by _build_restreams


LISTS = frozenset({"restream"})  # top-level arrays of tables ([[restream]]), not sections


def parse_size(value: object, key: str) -> int:
    """A byte count from an integer or a string such as "16MiB" or "2 GB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _SIZE_PATTERN.match(value)
        if match and match.group(2).upper() in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    raise ConfigError(
        f"{key} = {value!r}: not a size; use a whole number of bytes or a string such as "
        '"512MiB", "2GiB" or "100MB"'
    )


_RATE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kMG]?)bit(?:/s)?\s*$", re.IGNORECASE)
_BIT_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3}


def parse_rate(value: object, key: str) -> int:
    """Bytes per second from a size per second ("256KiB", 0) or a bit rate ("2Mbit", "500kbit")."""
    if isinstance(value, str) and (match := _RATE_PATTERN.match(value)):
        return int(float(match.group(1)) * _BIT_UNITS[match.group(2).upper()] / 8)
    try:
        return parse_size(value, key)
    except ConfigError:
        raise ConfigError(
            f"{key} = {value!r}: not a rate; use bytes per second (0 = no cap), a size such as "
            '"256KiB", or a bit rate such as "2Mbit" or "500kbit"'
        ) from None


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is dict:
        return "a table of strings"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        kind, "a list of strings"
    )


def _coerce(spec: dataclasses.Field[Any], kind: Any, value: object, key: str) -> Any:
    meta = spec.metadata
    if meta.get("size"):
        result: Any = parse_size(value, key)
    elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    elif typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is UplinkConfig:
        return _build_uplinks(value, key)
    elif typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is CampaignConfig:
        return _build_campaigns(value, key)
    elif typing.get_origin(kind) is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{key} = {value!r}: must be a list of strings")
        return tuple(_check_range(meta, item, key) for item in value)
    elif typing.get_origin(kind) is dict and typing.get_args(kind)[1] is int:
        return _check_schedule(meta, value, key)
    elif typing.get_origin(kind) is dict:
        return _check_table(meta, value, key)
    elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        result = value
    else:
        raise ConfigError(f"{key} = {value!r}: must be {_type_name(kind)}")
    return _check_range(meta, result, key)


def _check_range(meta: Mapping[str, Any], value: Any, key: str) -> Any:
    minimum, maximum = meta.get("minimum"), meta.get("maximum")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} = {value!r}: must be at least {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} = {value!r}: must be at most {maximum:g}")
    if meta.get("choices") and value not in meta["choices"]:
        allowed = ", ".join(repr(choice) for choice in meta["choices"])
        raise ConfigError(f"{key} = {value!r}: must be one of {allowed}")
    if meta.get("pattern") and not re.match(meta["pattern"], value):
        raise ConfigError(f"{key} = {value!r}: not allowed; must match {meta['pattern']}")
    return value


def _check_table(meta: Mapping[str, Any], value: object, key: str) -> dict[str, str]:
    """A table of names to strings: each name a stream's, each value checked like a string."""
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ConfigError(f"{key} = {value!r}: must be {_type_name(dict[str, str])}")
    for name, item in value.items():
        if not re.match(_STREAM_NAME, name):
            raise ConfigError(f"{key}.{name}: not a stream name; must match {_STREAM_NAME}")
        _check_range(meta, item, f"{key}.{name}")
    return dict(value)


def _build_uplinks(value: object, key: str) -> tuple[UplinkConfig, ...]:
    """`[[upload.uplinks]]` tables, each checked like a section; `match` is required."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(
            f'{key} = {value!r}: must be a list of tables ([[{key}]] with match = "wwan*")'
        )
    uplinks = []
    for index, item in enumerate(value):
        if "match" not in item:
            raise ConfigError(
                f'{key}[{index}]: no match; name an interface ("eth0") or a pattern ("wwan*")'
            )
        uplinks.append(_build_section(f"{key}[{index}]", UplinkConfig, item))
    return tuple(uplinks)


def _build_campaigns(value: object, key: str) -> tuple[CampaignConfig, ...]:
    """`[[guest.campaigns]]` tables, each checked like a section; `name` required, unique."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(
            f'{key} = {value!r}: must be a list of tables ([[{key}]] with name = "popup-1")'
        )
    campaigns: list[CampaignConfig] = []
    for index, item in enumerate(value):
        if not item.get("name"):
            raise ConfigError(f'{key}[{index}]: no name; name it ("popup-1") for /qr?campaign=')
        campaign = _build_section(f"{key}[{index}]", CampaignConfig, item)
        if any(other.name == campaign.name for other in campaigns):
            raise ConfigError(f"{key}[{index}]: name {campaign.name!r} is taken by another")
        campaigns.append(campaign)
    return tuple(campaigns)


def _check_schedule(meta: Mapping[str, Any], value: object, key: str) -> dict[str, int]:
    """Windows of the local day ("10:00-22:00") to rates; a window must not be empty."""
    if not isinstance(value, dict):
        raise ConfigError(f'{key} = {value!r}: must be a table such as {{"10:00-22:00" = "2Mbit"}}')
    schedule = {}
    for window, rate in value.items():
        name = f'{key}."{window}"'
        if not re.match(meta["pattern"], window):
            raise ConfigError(f'{name}: not a window; use local times such as "10:00-22:00"')
        start, _, end = window.partition("-")
        if start == end:
            raise ConfigError(f"{name}: starts where it ends; for all day set bandwidth_limit")
        schedule[window] = _check_range({"minimum": 0}, parse_rate(rate, name), name)
    return schedule


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {
        spec.name: hints[spec.name] for spec in dataclasses.fields(Config) if spec.name not in LISTS
    }


def restream_host(url: str) -> str:
    """The host of a restream URL (without port or brackets)."""
    authority = url.partition("://")[2].partition("/")[0]
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


def restream_name(url: str, stream: str) -> str:
    """A destination's default name: its platform (the host's second-level label: youtube,
    twitch) and the stream, as a name config accepts; never anything of the key."""
    host = restream_host(url)
    labels = host.split(".")
    numeric = all(label.isdigit() for label in labels) or ":" in host
    platform = host if numeric or len(labels) < 2 else labels[-2]
    return node_label(f"{platform}-{stream}")


def _masked_restream_url(url: object) -> str:
    """A restream URL as a config error shows it: up to its app, the rest masked (a key)."""
    if not isinstance(url, str):
        return "****"
    scheme, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    app = re.split(r"[/?#\s]", path, maxsplit=1)[0]
    return f"{scheme}://{authority.rpartition('@')[2]}/{app}/****"


def restream_url_problem(url: object, key_file: object) -> str | None:
    """Why a restream URL is refused before it is checked like any setting, whose error
    would show it whole: one that does not match, or one with more than the app and no
    key_file (the stream key pasted into the URL, as platforms show it)."""
    if not isinstance(url, str) or not re.match(_RESTREAM_URL, url):
        return "not an RTMP URL; must be rtmp://host[:port]/app or rtmps://... (no spaces)"
    path = url.partition("://")[2].partition("/")[2].rstrip("/")
    if "/" in path and not key_file:
        return (
            "has more than the application after the host (a stream key?): keep url = "
            f"{_masked_restream_url(url).removesuffix('/****')!r} and put the key in a "
            "key_file (mode 0600)"
        )
    return None


def _build_restreams(value: object) -> tuple[RestreamConfig, ...]:
    """`[[restream]]` tables, each checked like a section; `stream` and `url` required, names
    unique (a default name taken gets -2, -3)."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(
            f"restream = {value!r}: must be a list of tables ([[restream]] with stream = "
            '"test-pattern" and url = "rtmp://host/app")'
        )
    destinations: list[RestreamConfig] = []
    for index, item in enumerate(value):
        key = f"restream[{index}]"
        for required in ("stream", "url"):
            if not item.get(required):
                raise ConfigError(f"{key}: no {required}; [[restream]] needs stream and url")
        problem = restream_url_problem(item["url"], item.get("key_file", ""))
        if problem is not None:
            raise ConfigError(f"{key}.url = {_masked_restream_url(item['url'])!r}: {problem}")
        entry = _build_section(key, RestreamConfig, item)
        if entry.retry_min_seconds > entry.retry_max_seconds:
            raise ConfigError(
                f"{key}.retry_min_seconds = {entry.retry_min_seconds:g}: must be at most "
                f"retry_max_seconds ({entry.retry_max_seconds:g})"
            )
        taken = {other.name for other in destinations}
        if entry.name in taken:
            raise ConfigError(f"{key}: name {entry.name!r} is taken by another destination")
        if not entry.name:
            base = restream_name(entry.url, entry.stream)
            name = next(
                candidate
                for candidate in (base, *(f"{base[:59]}-{n}" for n in range(2, 1000)))
                if candidate not in taken
            )
            entry = dataclasses.replace(entry, name=name)
        destinations.append(entry)
    return tuple(destinations)


def _build_section(section: str, cls: type[Any], values: object) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table, not {values!r}")
    specs = {spec.name: spec for spec in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in specs:
            allowed = ", ".join(specs)
            raise ConfigError(f"{section}.{key}: unknown key; [{section}] allows {allowed}")
        kwargs[key] = _coerce(specs[key], hints[key], value, f"{section}.{key}")
    return cls(**kwargs)


def from_mapping(data: Mapping[str, object]) -> Config:
    """Validate a parsed TOML document into a Config; raise ConfigError naming the key."""
    sections = _section_types()
    for name in data:
        if name not in sections and name not in LISTS:
            allowed = ", ".join([*(f"[{section}]" for section in sections), "[[restream]]"])
            raise ConfigError(f"[{name}]: unknown section; allowed: {allowed}")
    built = {name: _build_section(name, cls, data.get(name, {})) for name, cls in sections.items()}
    return Config(**built, restream=_build_restreams(data.get("restream", [])))


def load(path: Path) -> Config:
    """Read and validate a TOML config file."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from error
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{path}: config file is UTF-16 text, not UTF-8; save it as UTF-8")
    try:
        text = raw.decode("utf-8-sig")  # editors on Windows start UTF-8 with a byte order mark
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: malformed TOML: {error}") from error
    try:
        return from_mapping(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def check_value(key: str, value: object) -> Any:
    """Validate one value given outside a file (a command-line override) as `section.key`."""
    section, _, name = key.partition(".")
    cls = _section_types()[section]
    spec = next(spec for spec in dataclasses.fields(cls) if spec.name == name)
    return _coerce(spec, typing.get_type_hints(cls)[name], value, key)


def with_overrides(config: Config, overrides: Mapping[str, object]) -> Config:
    """A copy with `section.key` values replaced, each validated like a file value."""
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        checked = check_value(key, value)
        updated = dataclasses.replace(getattr(config, section), **{name: checked})
        config = dataclasses.replace(config, **{section: updated})
    return config


def to_mapping(config: Config) -> dict[str, Any]:
    """The config as plain TOML-ready tables (sizes in bytes); `[[restream]]` as a list of
    tables, left out when empty (as a file without any)."""
    mapping: dict[str, Any] = {
        name: {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(getattr(config, name)).items()
        }
        for name in _section_types()
    }
    if config.restream:
        mapping["restream"] = [dataclasses.asdict(entry) for entry in config.restream]
    return mapping


def value_of(config: Config, key: str) -> object:
    """The value of `section.key`."""
    section, _, name = key.partition(".")
    return getattr(getattr(config, section), name)


def changed_keys(old: Config, new: Config) -> list[str]:
    """The `section.key` names whose values differ between two configs."""
    before, after = to_mapping(old), to_mapping(new)
    changed = [
        f"{section}.{key}"
        for section, values in after.items()
        if section not in LISTS
        for key, value in values.items()
        if before[section][key] != value
    ]
    return changed + [name for name in sorted(LISTS) if getattr(old, name) != getattr(new, name)]


MAX_LABEL = 63  # a DNS label, and a node name (_NAME_PATTERN)


def node_label(name: str) -> str:
    """`name` as lower case letters, digits and inner hyphens, at most 63 characters: a node name
    config accepts and the `<label>.local` mDNS advertises, the same string ("edged" if empty)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:MAX_LABEL].strip("-")
    return label or "edged"


def node_name(config: Config, hostname: str) -> str:
    """The box's name: [node] name, else the host name's first label made a valid name (Linux
    allows 64 characters in a host name, and any bytes)."""
    return config.node.name or node_label(hostname.split(".")[0])
