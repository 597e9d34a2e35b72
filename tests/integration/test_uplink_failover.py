"""A file's small requests and whole PUT go by its uplinks; one that cannot reach the upstream is
dropped (pool.failed) and the next one carries them; what each uplink sends is charged to it, as
the link's rate and not one connection's (#20). The pool is the real UplinkPool, with the
interfaces it finds given (its Discovery seam) and each uplink's store a real S3Store: a dead
one leads to a closed port, the others to moto."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import UplinkConfig
from edged.metrics import UploadMetrics
from edged.upload.classes import UploadClass
from edged.upload.journal import Journal
from edged.upload.links import Discovery, UplinkPool
from edged.upload.policy import TokenBucket
from edged.upload.s3 import S3Store
from edged.upload.state import FileState, UploadEvent
from edged.upload.transfer import FileTransfer
from edged.upload.uplinks import InterfaceFacts, Uplink
from tests.integration.upload_support import BUCKET, MiB, make_store, moto, write_random
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoProcess

pytestmark = pytest.mark.integration
__all__ = ["moto"]  # fixtures


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ChargedPool(UplinkPool):
    """The real pool, noting each sent() it is told: (interface, bytes, seconds)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.charged: list[tuple[str, int, float]] = []

    def sent(self, uplink: Uplink, nbytes: int, seconds: float) -> None:
        self.charged.append((uplink.interface, nbytes, seconds))
        super().sent(uplink, nbytes, seconds)


def pool_of(
    moto: MotoProcess, names: Sequence[str], rules: Sequence[UplinkConfig], dead: str = ""
) -> ChargedPool:
    """A pool of interfaces `names` (127.0.0.10, .11, ...), each by a store to moto but `dead`'s."""
    live = make_store(moto)
    gone = S3Store(
        endpoint=f"127.0.0.1:{closed_port()}",
        secure=False,
        region="us-east-1",
        bucket=BUCKET,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    facts = [
        InterfaceFacts(name, (f"127.0.0.{10 + index}",), up=True)
        for index, name in enumerate(names)
    ]
    return ChargedPool(
        rules,
        live,
        ("127.0.0.1", moto.port),
        store_factory=lambda uplink: gone if uplink.interface == dead else live,
        discovery=Discovery(
            facts=lambda: facts,
            route=lambda host, port: "127.0.0.10",
            reaches=lambda source, host, port, interface: True,  # all looked fine
        ),
    )


def two_uplinks(moto: MotoProcess) -> ChargedPool:
    return pool_of(moto, ["up0", "up1"], [UplinkConfig(match="up*")], dead="up0")


async def upload(
    tmp_path: Path, pool: UplinkPool, moto: MotoProcess, kind: str, size: int
) -> tuple[float, int]:
    """A file of `size` sent, completed and verified through `pool` (5 MiB parts, two senders):
    the seconds its sending took, and its parts."""
    path = tmp_path / f"{kind}.mp4"
    sha256 = await asyncio.to_thread(write_random, path, size)
    journal = await asyncio.to_thread(Journal, tmp_path / "journal.sqlite3")
    try:
        file_id = await asyncio.to_thread(
            lambda: journal.enqueue(
                path=str(path),
                key=f"gala/{path.name}",
                size=size,
                mtime_ns=path.stat().st_mtime_ns,
                sha256=sha256,
                priority=1,
                kind=kind,
                metadata={},
                now=time.time(),
            )
        )
        await asyncio.to_thread(journal.apply, file_id, UploadEvent.START)
        transfer = FileTransfer(
            journal,
            make_store(moto),
            UploadMetrics(CollectorRegistry()),
            TokenBucket(0, time.monotonic()),
            part_size=5 * MiB,
            parallel_parts=2,
            pool=pool,
        )
        record = await asyncio.to_thread(journal.require, file_id)
        started = time.monotonic()
        assert await transfer.send(record) is FileState.COMPLETING
        seconds = time.monotonic() - started
        assert await transfer.complete(record) is FileState.VERIFYING
        await transfer.verify(record)
        assert (await asyncio.to_thread(journal.require, file_id)).state is FileState.DONE
        return seconds, len(await asyncio.to_thread(journal.parts, file_id))
    finally:
        await asyncio.to_thread(journal.close)


async def test_a_whole_put_goes_by_the_next_uplink_when_the_first_is_dead(
    tmp_path: Path, moto: MotoProcess
) -> None:
    pool = two_uplinks(moto)
    await pool.refresh()
    assert [uplink.interface for uplink in pool.usable(UploadClass.CLIP)] == ["up0", "up1"]
    await upload(tmp_path, pool, moto, "clip", MiB)
    assert [uplink.interface for uplink in pool.usable(UploadClass.CLIP)] == ["up1"]


async def test_the_pool_is_told_the_links_rate_not_one_connections(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """Two senders on one uplink: the seconds charged for its parts are their shares of the
    link's time, which add up to no more than the sending took (each part's own time, as
    before, added up to nearly twice that: the pool saw half the link's rate)."""
    pool = pool_of(moto, ["up0"], [UplinkConfig(match="up0")])
    await pool.refresh()
    seconds, parts = await upload(tmp_path, pool, moto, "recording", 30 * MiB)
    charged = [each for each in pool.charged if each[1] > 0]
    assert len(charged) == parts == 6
    assert sum(each[2] for each in charged) <= seconds


def sent_today(pool: UplinkPool) -> dict[str, int]:
    return {row["interface"]: row["sent_today_bytes"] for row in pool.describe()}


async def test_a_whole_put_goes_by_the_unmetered_link_and_is_charged_to_it(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """The metered link measured faster: a small clip still goes by the unmetered one, and its
    bytes count against that link (they were charged to none: no budget, bytes or rate)."""
    rules = [UplinkConfig(match="up0", metered=True), UplinkConfig(match="up1")]
    pool = pool_of(moto, ["up0", "up1"], rules)
    await pool.refresh()
    up0, up1 = pool.usable(UploadClass.CLIP)
    pool.sent(up0, 40 * MiB, 1.0)  # the metered link: 40 MiB/s
    pool.sent(up1, 10 * MiB, 1.0)
    await upload(tmp_path, pool, moto, "clip", MiB)
    assert sent_today(pool) == {"up0": 40 * MiB, "up1": 11 * MiB}
    # Only bytes carried tell the pool a link works: the small requests (stat, stat) do not.
    assert [each[:2] for each in pool.charged] == [
        ("up0", 40 * MiB),
        ("up1", 10 * MiB),
        ("up1", MiB),
    ]


async def test_an_uplink_whose_budget_is_spent_mid_file_sends_no_more_of_it(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """up0 may send a byte a day: its first part spends it; the file's other parts go by up1
    (up0 kept sending its share before, the budget long spent)."""
    rules = [UplinkConfig(match="up0", daily_budget=1), UplinkConfig(match="up1")]
    pool = pool_of(moto, ["up0", "up1"], rules)
    await pool.refresh()
    assert [uplink.interface for uplink in pool.usable(UploadClass.RECORDING)] == ["up0", "up1"]
    _, parts = await upload(tmp_path, pool, moto, "recording", 30 * MiB)
    assert parts == 6
    spent = sent_today(pool)
    assert spent["up0"] <= 5 * MiB  # one part at most
    assert spent["up0"] + spent["up1"] == 30 * MiB
