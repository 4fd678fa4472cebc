"""Following a resumed run: subscribe to its events before the submit, or after it?

    .venv/bin/python -m benchmarks.hitl_submit_race [--trials 40]

Dify relays a run's events from Redis pub/sub: ``GET /workflow/{id}/events`` only sees what is
published after it subscribed. Each trial here pauses a Chatflow at its Human Input node on the
fake Dify, whose resumed run starts 35-80 ms after the submit returned (what 1.14.1's celery
worker took) and then streams 20 chunks, 5 ms apart. Strategies:

- ``before``: open the events stream, submit as soon as its headers arrived, follow it;
- ``after +N ms``: submit, let N ms pass (a busy event loop, a distant Dify), then open it;
- ``snapshot +N ms``: the same with ``include_state_snapshot=true``;
- ``snap+cont +N ms``: and ``continue_on_pause=true``, reading past a replayed pause.

Printed per strategy: how often every resumed chunk arrived as an event, the mean number of
chunks lost, how often the stream replayed a stale pause (the worker had not picked the
resume up yet, so the snapshot still shows the run paused, with the form already answered), and
how often the final answer was whole (``run_events`` replaces it with the run's
``outputs.answer`` at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from dataclasses import dataclass, field

from bot.dify.client import AnswerRequest, DifyClient, build_http
from bot.models import AnswerEnd, TextDelta, TextReplace
from tests.fakes.dify import FakeDify, HumanFlow, HumanInput

CHUNKS = tuple(f"w{i} " for i in range(20))
FLOW = HumanFlow(steps=(HumanInput(after=CHUNKS),))


@dataclass
class Tally:
    name: str
    all_events: int = 0
    whole_answer: int = 0
    paused_ends: int = 0
    lost: list[int] = field(default_factory=list)

    def line(self, trials: int) -> str:
        return (
            f"{self.name:<17} every chunk as an event {self.all_events:>3}/{trials}"
            f"   chunks lost (mean) {statistics.fmean(self.lost):5.1f}"
            f"   replayed a stale pause {self.paused_ends:>3}/{trials}"
            f"   whole answer at the end {self.whole_answer:>3}/{trials}"
        )


async def trial(
    fake: FakeDify, client: DifyClient, strategy: str, delay: float
) -> tuple[int, bool, bool]:
    """Chunks lost as events, whether it ended on a pause, whether the text was whole."""
    async with client.stream(AnswerRequest(query="ship it?", user="u")) as stream:
        shown = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
    end_form = fake.runs[-1].forms[-1]
    token, run_id = str(end_form.token), end_form.run_id
    fake.resume_delay = random.uniform(0.035, 0.080)
    whole = shown + "".join(CHUNKS)
    if strategy == "before":
        async with client.run_events(run_id, user="u", shown=shown) as events:
            await client.submit_form(token, inputs={"note": "ok"}, action="approve", user="u")
            return await read(events, shown, whole)
    await client.submit_form(token, inputs={"note": "ok"}, action="approve", user="u")
    await asyncio.sleep(delay)
    snapshot, keep_open = strategy.startswith("snap"), strategy == "snap+cont"
    async with client.run_events(
        run_id, user="u", snapshot=snapshot, continue_on_pause=keep_open, shown=shown
    ) as events:
        return await read(events, shown, whole)


async def read(events: object, shown: str, whole: str) -> tuple[int, bool, bool]:
    text, deltas, paused = shown, 0, False
    async for event in events:  # type: ignore[attr-defined]
        if isinstance(event, TextDelta):
            text += event.text
            deltas += 1
        elif isinstance(event, TextReplace):
            text = event.text
        elif isinstance(event, AnswerEnd) and event.paused:
            paused = True  # the replayed pause of a form already answered: read on if we can
        elif isinstance(event, AnswerEnd):
            break
    return len(CHUNKS) - deltas, paused, text == whole


async def main(trials: int) -> None:
    plans = [("before", "before", 0.0)]
    for ms in (0, 20, 50, 100, 200):
        plans.append((f"after +{ms} ms", "after", ms / 1000))
    plans.append(("snapshot +50 ms", "snapshot", 0.05))
    plans.append(("snap+cont +50 ms", "snap+cont", 0.05))
    async with FakeDify(flow=FLOW, chunk_delay=0.005) as fake:
        http = build_http(fake.base_url)
        client = DifyClient(http, api_key=fake.api_key, mode="advanced-chat")
        for name, strategy, delay in plans:
            tally = Tally(name)
            for _ in range(trials):
                lost, paused, whole = await trial(fake, client, strategy, delay)
                tally.lost.append(lost)
                tally.all_events += lost == 0
                tally.paused_ends += paused
                tally.whole_answer += whole
            print(tally.line(trials), flush=True)
        await http.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    asyncio.run(main(parser.parse_args().trials))
