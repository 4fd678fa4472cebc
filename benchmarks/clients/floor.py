"""The floor: aiohttp ``iter_any`` + splitting bytes on blank lines + orjson, nothing else."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import orjson


async def read(session: aiohttp.ClientSession, url: str) -> int:
    events = 0
    async with session.post(url + "/chat-messages", json={"query": "bench"}) as response:
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                if frame.startswith(b"data: "):
                    orjson.loads(frame[6:])
                    events += 1
    return events


async def main(url: str, runs: int) -> None:
    best, events = float("inf"), 0
    async with aiohttp.ClientSession() as session:
        for _ in range(runs):
            start = time.process_time()
            events = await read(session, url)
            best = min(best, time.process_time() - start)
    print(json.dumps({"events": events, "cpu": best}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
