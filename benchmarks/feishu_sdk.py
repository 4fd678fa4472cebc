"""What lark-oapi (the official Feishu SDK) would cost difybot, measured against the fake Feishu.

    .venv/bin/python -m benchmarks.feishu_sdk [--calls 200]

1. Importing it, in a fresh interpreter: wall time, peak RSS and modules loaded, next to what
   difybot already imports for HTTP (aiohttp, httpx, cryptography).
2. Its async API on our event loop: ``acreate`` fetches the tenant token with blocking
   ``requests`` inside the coroutine. With the token endpoint hanging, how long is the loop
   frozen (a ticker on the loop measures its longest gap)?
3. Its async transport opens a new ``httpx.AsyncClient`` per request: CPU and wall per message
   sent, against one shared httpx client doing the same request.

The fake runs in its own thread and event loop, like a remote server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

IMPORT_PROBE = """
import json, resource, sys, time
t = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"ms": elapsed * 1000, "rss": rss, "modules": len(sys.modules)}}))
"""


def import_cost(imports: str) -> dict[str, float]:
    runs = []
    for _ in range(3):  # the first run may compile bytecode; keep the best of three
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE.format(imports=imports)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        runs.append(json.loads(out))
    return min(runs, key=lambda run: run["ms"])


class FakeInThread:
    """FakeFeishu served from another thread's event loop, as a remote server would be."""

    def __init__(self) -> None:
        from tests.fakes.feishu import FakeFeishu

        self.fake = FakeFeishu(api_per_second=10**6, api_per_minute=10**9)
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeInThread:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def on_loop(self, action: Callable[[], None]) -> None:
        self._loop.call_soon_threadsafe(action)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.fake:
            self._ready.set()
            await self._stop.wait()


async def longest_stall(work: Awaitable[Any]) -> tuple[float, Any]:
    """Run ``work`` while a ticker on the same loop records its longest gap between ticks."""
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    try:
        result: Any = await work
    except Exception as error:  # the SDK raises when its blocking token fetch times out
        result = error
    done = True
    await tick
    return longest, result


def sdk_client(fake: Any, timeout: float) -> Any:
    import lark_oapi as lark
    from lark_oapi.core.cache import LocalCache

    return (
        lark.Client.builder().app_id(fake.app_id).app_secret(fake.app_secret)
        .domain(fake.url).timeout(timeout).cache(LocalCache()).build()
    )  # fmt: skip


def text_request(open_id: str) -> Any:
    from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody

    body = CreateMessageRequestBody.builder().receive_id(open_id).msg_type("text")
    body = body.content(json.dumps({"text": "hello"})).build()
    return CreateMessageRequest.builder().receive_id_type("open_id").request_body(body).build()


async def loop_freeze(server: FakeInThread, client_timeout: float) -> None:
    fake = server.fake
    server.on_loop(lambda: fake.hang_next("auth.tenant_access_token"))
    client = sdk_client(fake, client_timeout)
    stall, result = await longest_stall(client.im.v1.message.acreate(text_request("ou_x")))
    print(f"  token endpoint hanging, client timeout {client_timeout:.1f} s: event loop frozen for "
          f"{stall:.2f} s ({type(result).__name__})")  # fmt: skip
    client = sdk_client(fake, client_timeout)
    stall, result = await longest_stall(client.im.v1.message.acreate(text_request("ou_x")))
    print(f"  token endpoint answering (loopback): longest loop gap {stall * 1000:.1f} ms "
          f"during the first call (code {getattr(result, 'code', '?')})")  # fmt: skip


async def per_call(server: FakeInThread, calls: int) -> None:
    fake = server.fake
    client = sdk_client(fake, 10.0)
    await asyncio.to_thread(client.im.v1.message.create, text_request("ou_warm"))  # cache token
    token = fake.tokens[-1].value
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        answer = await client.im.v1.message.acreate(text_request("ou_x"))
        assert answer.success(), answer.msg
    sdk_cpu, sdk_wall = time.process_time() - cpu, time.perf_counter() - wall
    headers = {"Authorization": f"Bearer {token}"}
    body = {"receive_id": "ou_x", "msg_type": "text", "content": json.dumps({"text": "hello"})}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers) as http:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            answer = await http.post("/open-apis/im/v1/messages?receive_id_type=open_id", json=body)
            assert answer.json()["code"] == 0
        own_cpu, own_wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"  lark-oapi acreate (new AsyncClient per call): {sdk_cpu / calls * 1000:.2f} ms CPU, "
          f"{sdk_wall / calls * 1000:.2f} ms wall per message")  # fmt: skip
    print(f"  one shared httpx.AsyncClient:               {own_cpu / calls * 1000:.2f} ms CPU, "
          f"{own_wall / calls * 1000:.2f} ms wall per message")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print("1. import cost (fresh interpreter, best of 3)")
    for label, imports in (
        ("aiohttp + httpx + cryptography", "import aiohttp, httpx, cryptography"),
        ("lark_oapi", "import lark_oapi"),
    ):
        cost = import_cost(imports)
        print(f"  {label:32} {cost['ms']:7.0f} ms  peak RSS {cost['rss']:6.1f} MiB  "
              f"{cost['modules']:6.0f} modules")  # fmt: skip
    with FakeInThread() as server:
        print("2. lark-oapi's async API on our event loop")
        asyncio.run(loop_freeze(server, client_timeout=1.0))
        print(f"3. per message sent ({args.calls} sends, token cached)")
        asyncio.run(per_call(server, args.calls))


if __name__ == "__main__":
    main()
