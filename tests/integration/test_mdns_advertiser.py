"""The Advertiser's late rename: a name answered only once probing began (after the listening
missed it) renames both services and the host name, with the web page's service following."""

from __future__ import annotations

import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from edged import discovery
from edged.discovery import EDGED_SERVICE, HTTP_SERVICE, Advertiser


def advertiser(port: int, listen_seconds: float) -> Advertiser:
    return Advertiser(
        node="latebox",
        port=port,
        addresses=["127.0.0.1"],
        properties={},
        interfaces=("127.0.0.1",),
        listen_seconds=listen_seconds,
    )


@pytest.mark.timeout(60)
async def test_a_name_heard_taken_only_while_probing_renames_both_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = advertiser(18080, 0.1)  # nothing else on loopback to hear
    await first.start()
    second = advertiser(18081, 1.0)  # long enough for the first box's answers to be cached
    # the listening "missed" them: only zeroconf's probe, on its cache, finds the name taken
    monkeypatch.setattr(discovery, "free_label", lambda requested, taken: requested)
    try:
        await second.start()
        assert second.label == "latebox-2"
        seen = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        try:
            for service_type in (EDGED_SERVICE, HTTP_SERVICE):
                info = await seen.async_get_service_info(
                    service_type, f"latebox-2.{service_type}", timeout=5000
                )
                assert info is not None, service_type
                assert (info.port, info.server) == (18081, "latebox-2.local."), service_type
        finally:
            await seen.async_close()
    finally:
        await second.stop()
        await first.stop()
