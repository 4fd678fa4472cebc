"""Telegram's flood limits under load: concurrent streamed answers against the fake Bot API.

    .venv/bin/python -m benchmarks.telegram_flood [--chats 20] [--group 5] [--seconds 6]

A real difybot (``difybot serve`` wiring, SQLite) answers ``--chats`` private questions arriving
together, streamed by drafts, then the same by edits, then ``--group`` @mentions at once in one
supergroup. Each answer streams for ``--seconds`` (10 chunks a second). The fake Bot API enforces
Telegram's limits (tests/fakes/telegram_flood.py: 1 message or edit per second per chat with
bursts of 3, 20 a minute per group, 30 a second overall, drafts 1 a second per chat) and answers
429 past them. Real time. "longest gap" is between two visible updates of one chat (in the
group: of any of its answers).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.telegram import FakeTelegram, TelegramCall
from tests.fakes.wechat_app import difybot

VISIBLE = ("sendMessage", "editMessageText", "sendMessageDraft")


async def scenario(
    name: str, chats: int, seconds: float, *, group: bool, drafts: bool
) -> dict[str, Any]:
    chunks = [f"word{n} " for n in range(int(seconds * 10))]
    async with FakeDify() as dify, FakeTelegram() as tg:
        for _ in range(chats):
            dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.1))
        with tempfile.TemporaryDirectory() as folder:
            config = {"telegram_bot_token": tg.token, "telegram_api_base": tg.base_url,
                      "telegram_drafts": drafts}  # fmt: skip
            async with difybot(dify, Path(folder) / "db", **config) as running:
                places, asked = await _ask(tg, chats, group=group)
                finals = sum(1 for _ in places)
                await tg.until(lambda: _done(tg, places) == finals, seconds * 40 + 120)
                await running.core.inbox.idle()
                ended = time.monotonic()
    return _figures(name, tg, places, asked, ended, seconds)


async def _ask(tg: FakeTelegram, n: int, *, group: bool) -> tuple[list[int], float]:
    asked = time.monotonic()
    if group:
        chat = tg.inbound.group("Load test")
        for i in range(n):
            tg.inbound.text(chat, f"@dify_fake_bot question {i}", user=tg.inbound.user())
        return [chat.id] * n, asked
    places = []
    for i in range(n):
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, f"question {i}")
        places.append(chat.id)
    return places, asked


def _done(tg: FakeTelegram, places: list[int]) -> int:
    return sum(1 for m in tg.state.sent_by_bot() if m.reply_markup and m.chat.id in places)


def _figures(
    name: str, tg: FakeTelegram, places: list[int], asked: float, ended: float, seconds: float
) -> dict[str, Any]:
    by_chat: dict[int, list[TelegramCall]] = {}
    for call in tg.calls:
        chat = call.args.get("chat_id")
        if call.method in (*VISIBLE, "sendChatAction") and call.ok and chat is not None:
            by_chat.setdefault(int(chat), []).append(call)
    life = [next(c.at for c in calls if c.method == "sendChatAction") - asked
            for calls in by_chat.values()]  # fmt: skip
    first = [next(c.at for c in calls if c.method in VISIBLE) - asked for calls in by_chat.values()]
    gaps = []
    for calls in by_chat.values():
        shown = [c.at for c in calls if c.method in VISIBLE]
        gaps += [b - a for a, b in itertools.pairwise(shown)]
    visible = [c for c in tg.calls if c.method in VISIBLE and c.ok]
    return {
        "scenario": name,
        "answers": len(places),
        "finals": _done(tg, places),
        "http_429": len(tg.rate_limited),
        "http_429_by_method": dict(Counter(method for method, _ in tg.rate_limited)),
        "sign_of_life_max_s": max(life),
        "first_text_p50_s": statistics.median(first),
        "longest_gap_s": max(gaps) if gaps else 0.0,
        "visible_calls_per_answer": len(visible) / len(places),
        "typing_per_answer": len(tg.calls_to("sendChatAction")) / len(places),
        "all_done_s": ended - asked,
        "answer_s": seconds,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        await scenario("private, drafts", args.chats, args.seconds, group=False, drafts=True),
        await scenario("private, edits", args.chats, args.seconds, group=False, drafts=False),
        await scenario("one group, edits", args.group, args.seconds, group=True, drafts=False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--group", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    rows = asyncio.run(run(parser.parse_args()))
    header = ("scenario", "answers", "finals", "429s", "life max s", "first text p50 s",
              "longest gap s", "calls/answer", "typing/answer", "all done s")  # fmt: skip
    print(" | ".join(header))
    for r in rows:
        print(f"{r['scenario']} | {r['answers']} | {r['finals']} | {r['http_429']} | "
              f"{r['sign_of_life_max_s']:.2f} | {r['first_text_p50_s']:.2f} | "
              f"{r['longest_gap_s']:.1f} | {r['visible_calls_per_answer']:.1f} | "
              f"{r['typing_per_answer']:.1f} | "
              f"{r['all_done_s']:.1f} {r['http_429_by_method'] or ''}")  # fmt: skip


if __name__ == "__main__":
    main()
