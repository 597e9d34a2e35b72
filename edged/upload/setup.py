"""Build the uploader from the config: journal in the data dir, S3 store when configured."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edged.config import Config
from edged.errors import ConfigError
from edged.metrics import UplinkMetrics, UploadMetrics
from edged.paths import read_private_file
from edged.upload.journal import Journal
from edged.upload.links import BUDGET_FILE, CapSchedule, UplinkPool, upstream_address
from edged.upload.naming import ObjectNaming
from edged.upload.s3 import S3Store
from edged.upload.uplinks import Uplink, cap_schedule
from edged.upload.uploader import Uploader, UploaderSettings

JOURNAL_FILE = "uploads.sqlite3"


def naming_for(config: Config, node: str) -> ObjectNaming:
    return ObjectNaming(prefix=config.upstream.prefix, event=config.node.event, node=node)


def key_for(
    config: Config, node: str, path: Path, stream: str, when: datetime | None = None
) -> str:
    """The object key of a local file, by DESIGN.md's upstream layout."""
    moment = when or datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return naming_for(config, node).key(stream, moment, path.name)


def read_secret(config: Config) -> str:
    """The upstream's secret key, from its file (mode 0600)."""
    path = Path(config.upstream.secret_key_file).expanduser()
    return read_private_file(path, "upstream secret key file")


def build_store(
    config: Config, node: str, uplink: Uplink | None = None, secret: str | None = None
) -> S3Store | None:
    """The S3 store, or None while [upstream] endpoint is empty (sync off); its connections
    leave by `uplink` when one is given; `secret`: the secret key already read (else its file
    is read now)."""
    upstream = config.upstream
    if not upstream.endpoint:
        return None
    if not upstream.access_key or not upstream.secret_key_file:
        raise ConfigError(
            "upstream.endpoint is set but upstream.access_key or upstream.secret_key_file is "
            "empty; set both (the secret file must be mode 0600)"
        )
    if secret is None:
        secret = read_secret(config)
    return S3Store(
        endpoint=upstream.endpoint,
        secure=upstream.secure,
        region=upstream.region,
        bucket=upstream.bucket,
        access_key=upstream.access_key,
        secret_key=secret,
        sts_role_arn=upstream.sts_role_arn,
        policy_prefix=naming_for(config, node).event_prefix(),
        connections=config.upload.parallel_parts + 2,
        source_address=uplink.address if uplink is not None else "",
        interface=uplink.interface if uplink is not None else "",
    )


def build_pool(
    config: Config,
    data_dir: Path,
    node: str,
    store: S3Store | None,
    metrics: UplinkMetrics | None,
) -> UplinkPool:
    """The uplinks of `[upload] uplinks`; without any, the kernel's route by `store` alone. The
    secret key is read once, here: a file changed since fails no upload made by an uplink."""
    upstream = config.upstream
    address = upstream_address(upstream.endpoint, upstream.secure) if upstream.endpoint else None
    secret = read_secret(config) if store is not None else ""

    def store_by(uplink: Uplink) -> S3Store:
        bound = build_store(config, node, uplink, secret)
        if bound is None:
            raise RuntimeError("no upstream configured: there is no store to send by")
        return bound

    return UplinkPool(
        config.upload.uplinks,
        store,
        address,
        store_factory=store_by if store is not None else None,
        budget_file=data_dir / BUDGET_FILE,
        metrics=metrics,
    )


def build_uploader(
    config: Config,
    data_dir: Path,
    node: str,
    metrics: UploadMetrics,
    *,
    max_pages: int | None = None,
) -> Uploader:
    settings = UploaderSettings(
        part_size=config.upload.part_size,
        parallel_parts=config.upload.parallel_parts,
        bandwidth_limit=config.upload.bandwidth_limit,
        newest_first=config.upload.newest_first,
        event_retention_days=config.upload.event_retention_days,
        stale_prefix=naming_for(config, node).node_prefix(),
    )
    store = build_store(config, node)
    journal = Journal(data_dir / JOURNAL_FILE, max_pages=max_pages)
    pool = build_pool(config, data_dir, node, store, metrics.uplinks) if store else None
    schedule = CapSchedule(
        cap_schedule(config.upload.bandwidth_schedule), config.upload.bandwidth_limit
    )
    return Uploader(journal, store, settings, metrics, pool=pool, schedule=schedule)
