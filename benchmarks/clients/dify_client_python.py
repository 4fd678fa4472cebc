"""Peer: PyPI dify-client-python 1.0.3 (async, httpx-sse + a pydantic model per event).

Runs in its own virtual environment: the package is named ``dify_client`` like the official SDK.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from dify_client import AsyncClient, models


async def main(url: str, runs: int) -> None:
    client = AsyncClient(api_key="app-bench", api_base=url)
    request = models.ChatRequest(
        query="bench", user="bench", inputs={}, response_mode=models.ResponseMode.STREAMING
    )
    best, events = float("inf"), 0
    for _ in range(runs):
        start, events = time.process_time(), 0
        # The package's shared client has httpx's 5 s default timeout: pass a longer one.
        async for _event in await client.achat_messages(request, timeout=60):
            events += 1
        best = min(best, time.process_time() - start)
    print(json.dumps({"events": events, "cpu": best}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
