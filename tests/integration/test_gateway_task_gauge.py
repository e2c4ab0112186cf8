"""The gateway exposes its event loop's task count on its existing /metrics (no new route),
so a soak can see a task leak."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.gateway_harness import RunningGateway, bearer, gateway_settings, running_gateway
from tests.upstream_server import UpstreamServer


def tasks_gauge(text: str) -> float:
    line = next(ln for ln in text.splitlines()
                if ln.startswith("ragward_gateway_event_loop_tasks "))
    return float(line.rsplit(" ", 1)[1])


async def burst(gw: RunningGateway, n: int = 20) -> None:
    replies = await asyncio.gather(*(gw.client.post(
        "/v1/query", json={"question": f"q {i}"}, headers=bearer()) for i in range(n)))
    assert {r.status_code for r in replies} == {200}


async def gauge(gw: RunningGateway) -> float:
    return tasks_gauge((await gw.client.get("/metrics")).text)


async def test_task_gauge_counts_the_loops_tasks_and_stays_flat_after_requests(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """``ragward_gateway_event_loop_tasks`` counts the tasks alive in the gateway's loop
    (here shared with the test and its upstream, whose keep-alive connections hold tasks):
    five more tasks show as five more; a second burst of requests, once pools are grown,
    leaves the count where the first left it (polled, bounded)."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        await burst(gw)  # grows the connection pools (and the upstream's handlers)
        before = await gauge(gw)
        extra = [asyncio.create_task(asyncio.sleep(30)) for _ in range(5)]
        try:
            assert await gauge(gw) >= before + 5
        finally:
            for task in extra:
                task.cancel()
            await asyncio.gather(*extra, return_exceptions=True)
        await burst(gw)
        deadline = asyncio.get_running_loop().time() + 15
        while (after := await gauge(gw)) > before + 2:
            assert asyncio.get_running_loop().time() < deadline, (before, after)
            await asyncio.sleep(0.1)
