"""The supervision helper: the pure restart policy, and real tasks that fail, return or are
cancelled; /readyz names a task that keeps failing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from edged.supervise import RestartPolicy, Supervisor, describe
from edged.web.app import create_app
from tests.web_context import web_context


def test_backoff_doubles_to_the_cap_and_a_long_run_forgets_the_streak() -> None:
    policy = RestartPolicy(minimum=1.0, maximum=30.0, stable=60.0, failing_after=3)
    policy.started(0.0)
    waits = []
    now = 0.0
    for _ in range(7):
        now += 0.5
        waits.append(policy.failed(now, "boom"))
        policy.started(now + waits[-1])
        now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.failing and policy.restarts == 7
    assert not policy.ran_well(now + 59.0)
    assert policy.ran_well(now + 60.0)
    assert policy.failed(now + 61.0, "again") == 1.0  # a minute of good run: the streak is over
    assert policy.streak == 1 and not policy.failing and policy.restarts == 8


def test_describe_gives_type_and_message() -> None:
    assert describe(ValueError("bad row")) == "ValueError: bad row"
    assert describe(KeyError()) == "KeyError"


def counter(registry: CollectorRegistry | None = None) -> Counter:
    registry = CollectorRegistry() if registry is None else registry
    return Counter("edged_task_restarts", "test", ["task"], registry=registry)


async def test_a_failing_task_restarts_is_counted_and_logged_once_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(counter(registry), minimum=0.01)
    runs = []
    recovered = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) <= 4:
            raise RuntimeError(f"failure {len(runs)}")
        recovered.set()
        await asyncio.Event().wait()  # then it runs for good

    caplog.set_level(logging.ERROR, "edged")
    supervisor.spawn("flaky", flaky)
    async with asyncio.timeout(10):
        await recovered.wait()
    assert registry.get_sample_value("edged_task_restarts_total", {"task": "flaky"}) == 4
    assert supervisor.restarts("flaky") == 4
    assert supervisor.alive("flaky")
    assert caplog.text.count("Traceback") == 1
    assert "task flaky failed again (4 in a row: RuntimeError: failure 4)" in caplog.text
    assert supervisor.failing() == {"flaky": "RuntimeError: failure 4"}
    await supervisor.stop()
    assert not supervisor.alive("flaky")
    await supervisor.stop()  # idempotent


async def test_a_task_that_returns_or_is_cancelled_is_not_restarted() -> None:
    supervisor = Supervisor(counter(), minimum=0.01)
    done = supervisor.spawn("once", lambda: asyncio.sleep(0))
    await done
    assert not supervisor.alive("once") and supervisor.restarts("once") == 0
    event = asyncio.Event()

    async def waits() -> None:
        await event.wait()

    waiting = supervisor.spawn("waits", waits)
    await supervisor.cancel("waits")
    assert waiting.cancelled() and supervisor.restarts("waits") == 0


async def test_readyz_names_a_task_that_keeps_failing(tmp_path: Path) -> None:
    supervisor = Supervisor(counter(), minimum=0.01)

    async def broken() -> None:
        raise OSError("disk on fire")

    context = web_context(tmp_path, failing_tasks=supervisor.failing, subsystems={"http": True})
    async with TestClient(TestServer(create_app(context), host="127.0.0.1")) as client:
        response = await client.get("/readyz")
        assert response.status == 200
        supervisor.spawn("replicator", broken)
        async with asyncio.timeout(10):
            while (response := await client.get("/readyz")).status == 200:
                pass  # three failures in a row take 0.01 + 0.02 + 0.04 s
        assert response.status == 503
        body = await response.json()
        assert body["failing_tasks"] == {"replicator": "OSError: disk on fire"}
    await supervisor.stop()
