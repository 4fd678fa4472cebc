"""A loopback server that streams the recorded answer, one HTTP chunk per frame like gunicorn.

Runs in its own process so its CPU time never counts against the client being measured:
``python -m benchmarks.sse_server`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from benchmarks.sse_stream import chat_stream


async def main(events: int) -> None:
    frames = chat_stream(events)

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for data in frames:
            await response.write(data)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat-messages", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("PORT", runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
