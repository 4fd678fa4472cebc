"""LINE's reply on its own against the fake Messaging API: exactly once across a takeover,
429 pauses, the monthly quota, the loading animation's renewals."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.background import Background
from adapters.line.api import LineAPI, LinePacer, build_http
from adapters.line.reply import Labels, LineReply, Progress, ReplyOptions, Target
from bot.models import Answer
from tests.fakes.line import ACCESS_TOKEN, FakeLine

PUSH = "/v2/bot/message/push"
LABELS = Labels(like="👍", dislike="👎", cut="(cut)")


@pytest.fixture
async def line() -> AsyncIterator[FakeLine]:
    async with FakeLine() as fake:
        yield fake


@pytest.fixture
async def api(line: FakeLine) -> AsyncIterator[LineAPI]:
    http = build_http()
    yield LineAPI(
        http, token=ACCESS_TOKEN, api_base=line.api_url, data_base=line.data_url,
        pacer=LinePacer(base=0.01),
    )  # fmt: skip
    await http.aclose()


class Saved(list[dict[str, Any]]):
    async def __call__(self, state: dict[str, Any]) -> None:
        self.append(dict(state))


def reply_to(
    api: LineAPI, user: str, saved: Saved, *, state: dict[str, Any] | None = None, **options: Any
) -> LineReply:
    return LineReply(
        api=api, target=Target(chat=user, kind="user"), save=saved, labels=LABELS,
        background=Background(), options=ReplyOptions(feedback=False, **options),
        progress=Progress.of(state),
    )  # fmt: skip


async def test_a_taker_repeats_the_dead_replicas_push_key_and_line_sends_nothing_twice(
    api: LineAPI, line: FakeLine
) -> None:
    user = line.events.user()
    key = str(uuid.uuid4())
    # Replica A saved the key, pushed, and died before saving that the push went through.
    await api.push(user, [{"type": "text", "text": "the answer"}], retry_key=key)
    saved = Saved()
    taker = reply_to(api, user, saved, state={"sent": 0, "pushed": 0, "key": key})
    await taker.finish("the answer", Answer())
    first, again = line.calls_to(PUSH)
    assert first.status == 200 and again.status == 409 and again.retry_key == key
    assert line.texts(user) == ["the answer"]
    assert saved[-1] == {"sent": 1, "pushed": 1, "key": "", "done": True}
    await reply_to(api, user, Saved(), state=saved[-1]).finish("the answer", Answer())
    assert len(line.calls_to(PUSH)) == 2  # a finished entry sends nothing


async def test_the_key_is_saved_before_the_push_is_sent(api: LineAPI, line: FakeLine) -> None:
    user = line.events.user()
    saved = Saved()
    await reply_to(api, user, saved).finish("hi", Answer())
    (push,) = line.calls_to(PUSH)
    assert saved[0] == {"sent": 0, "pushed": 0, "key": push.retry_key, "done": False}


async def test_a_rate_limited_push_waits_and_goes_once(api: LineAPI, line: FakeLine) -> None:
    user = line.events.user()
    line.fail_next(PUSH, 429, times=2)
    await reply_to(api, user, Saved()).finish("patience", Answer())
    statuses = [c.status for c in line.calls_to(PUSH)]
    assert statuses == [429, 429, 200]
    assert len({c.retry_key for c in line.calls_to(PUSH)}) == 1
    assert line.texts(user) == ["patience"]


@pytest.mark.allow_warnings(r"LINE push refused \(429\)")
async def test_the_monthly_quota_is_not_retried(line: FakeLine) -> None:
    async with FakeLine(push_quota=0) as empty:
        http = build_http()
        api = LineAPI(http, token=ACCESS_TOKEN, api_base=empty.api_url,
                      data_base=empty.data_url, pacer=LinePacer(base=0.01))  # fmt: skip
        user = empty.events.user()
        saved = Saved()
        await reply_to(api, user, saved).finish("no quota", Answer())
        await http.aclose()
    (push,) = empty.calls_to(PUSH)
    assert push.status == 429 and empty.texts(user) == []
    assert not saved[-1]["done"]


async def test_the_loading_animation_is_renewed_until_the_answer_goes(
    api: LineAPI, line: FakeLine
) -> None:
    user = line.events.user()
    reply = reply_to(api, user, Saved(), loading_seconds=5, loading_every=0.01)
    await reply.start()
    await line.wait_for("/v2/bot/chat/loading/start", 3)
    await reply.finish("done", Answer())
    calls = line.calls_to("/v2/bot/chat/loading/start")
    assert all(c.json == {"chatId": user, "loadingSeconds": 5} for c in calls)
    assert line.texts(user) == ["done"] and not line.is_loading(user)
    assert calls[-1].at <= line.calls_to(PUSH)[0].at  # stopped before the answer went


async def test_no_loading_animation_in_groups(api: LineAPI, line: FakeLine) -> None:
    group = line.events.group()
    reply = LineReply(
        api=api, target=Target(chat=group, kind="group"), save=Saved(), labels=LABELS,
        background=Background(),
    )  # fmt: skip
    await reply.start()
    await reply.finish("hi all", Answer())
    assert line.calls_to("/v2/bot/chat/loading/start") == []
    assert line.texts(group) == ["hi all"]


async def test_a_hung_loading_call_does_not_hold_the_answer_back(
    api: LineAPI, line: FakeLine
) -> None:
    user = line.events.user()
    line.fail_next("/v2/bot/chat/loading/start", 500, hang=True)
    reply = reply_to(api, user, Saved())
    await reply.start()
    await line.wait_for("/v2/bot/chat/loading/start")
    await reply.finish("here anyway", Answer())  # waits LOADING_GRACE for it, then goes on
    assert line.texts(user) == ["here anyway"]
    line.release_hangs()
