"""What one Feishu answer costs and how soon it shows, through the real wiring and the fakes.

    .venv/bin/python -m benchmarks.feishu_answer [--answers 20] [--chunks 40] [--delay 0.05]

For each card path (CardKit streaming, and PATCHed cards when CardKit is refused) it sends
``--answers`` p2p questions over the webhook, one at a time, each answered by fake Dify in
``--chunks`` chunks ``--delay`` s apart, and prints: the time from the callback's arrival to the
card being sent (the sign of life), the callback's own answer time (Feishu wants 200 within 3 s),
and the Feishu API calls per answer by route.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import ENCRYPT_KEY, VERIFICATION_TOKEN, FeishuCallbacks
from tests.fakes.wechat_app import difybot


async def run_path(cardkit: bool, answers: int, chunks: int, delay: float) -> None:
    async with FakeDify() as dify, FakeFeishu() as feishu:
        settings = {"feishu_app_id": feishu.app_id, "feishu_app_secret": feishu.app_secret,
                    "feishu_api_base": feishu.url, "feishu_event_mode": "webhook",
                    "feishu_verification_token": VERIFICATION_TOKEN,
                    "feishu_encrypt_key": ENCRYPT_KEY}  # fmt: skip
        if not cardkit:
            feishu.fail_next("cardkit.card.create", code=99991672, msg="no cardkit permission")
        with tempfile.TemporaryDirectory() as folder:
            async with difybot(dify, Path(folder) / "db", **settings) as running:
                callbacks = FeishuCallbacks()
                adapter = running.adapter("feishu")
                shown, acked = [], []
                for n in range(answers):
                    words = [f"w{i} " for i in range(chunks)]
                    dify.enqueue("/chat-messages", Answer(chunks=words, delay=delay))
                    chat = feishu.messages.p2p_chat(f"ou_bench{n}")
                    question = feishu.user_message(
                        chat_id=chat, chat_type="p2p", sender=f"ou_bench{n}", content={"text": "q"}
                    )
                    before = len(feishu.calls_to("im.message.create"))
                    started = feishu.clock()
                    event = callbacks.message_received(question)
                    delivery = await callbacks.post(f"{running.url}/feishu/events", event)
                    acked.append(feishu.clock() - started)
                    assert delivery.status == 200
                    sent = await feishu.wait_for("im.message.create", before + 1)
                    shown.append(sent[before].at - started)
                    await adapter.drain()
        routes = Counter(call.route for call in feishu.calls)
    name = "CardKit streaming" if cardkit else "PATCHed card (CardKit refused)"
    print(f"\n{name}: {answers} answers of {chunks} chunks, {delay * 1000:.0f} ms apart")
    print(
        f"  card sent after the callback: median {statistics.median(shown) * 1000:.0f} ms, "
        f"max {max(shown) * 1000:.0f} ms"
    )
    print(
        f"  callback answered: median {statistics.median(acked) * 1000:.0f} ms, "
        f"max {max(acked) * 1000:.0f} ms"
    )
    for route, count in sorted(routes.items()):
        print(f"  {route:32s} {count / answers:6.1f} per answer")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    started = time.monotonic()
    for cardkit in (True, False):
        asyncio.run(run_path(cardkit, args.answers, args.chunks, args.delay))
    print(f"\n({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
