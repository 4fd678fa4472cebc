"""difybot's DifyClient reading the recorded stream: typed events, as the dispatcher gets them."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bot.dify.client import AnswerRequest, DifyClient, build_http


async def main(url: str, runs: int) -> None:
    http = build_http(url)
    client = DifyClient(http, api_key="app-bench", mode="chat")
    best, events = float("inf"), 0
    for _ in range(runs):
        start, events = time.process_time(), 0
        async with client.stream(AnswerRequest(query="bench", user="bench")) as stream:
            async for _event in stream:
                events += 1
        best = min(best, time.process_time() - start)
    await http.aclose()
    print(json.dumps({"events": events, "cpu": best}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
