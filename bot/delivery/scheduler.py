"""The delivery scheduler: every rate-limited platform call of an account, best priority first,
within token buckets that every replica shares.

A platform declares its limits once (``Limit`` per method: per account, and per channel where the
platform counts per channel) and makes each rate-limited call through the ``Account`` of the
workspace / bot / app it calls for::

    scheduler = Scheduler("slack", budgets, {"chat.update": (Limit.per_minute(50),)},
                          rate_limited=retry_after_of_429, metrics=metrics)
    team = scheduler.account("T123")
    await team.call("chat.update", lambda: client.chat_update(...), priority=Priority.FINAL)
    if await team.now("chat.update", priority=Priority.INTERIM, turn_of=reply): ...

Priorities, in the order a user needs them (``Priority``): the final answer, the first sign of
life, stream start/stop, interim edits/appends, clean-up (deletes). Two mechanisms keep them:

- across replicas, each class leaves a few tokens to the classes above it (``KEEP``): a final
  takes the last token, an interim edit only when four are there, so when tokens are short
  only the better classes get them;
- in this process, calls of one method waiting for a token queue by priority, and only the best
  one asks the shared bucket: a final that arrives overtakes every waiting lower call.

Interim calls never wait (``now``: now or never, taking turns between the replies that want
them), so edits thin out under load while finals keep their pace. A 429 (``block``) stops the
method for the account on every replica for Retry-After; waiting calls then go again best first.
Saturation (a call waiting longer than ``SATURATED`` or an interim call refused) is logged once
when it starts and once when it ends, per account.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

from bot.ops.metrics import Metrics
from bot.stores import Budgets

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
RateLimited = Callable[[BaseException], float | None]  # a 429's Retry-After seconds, else None
Sleep = Callable[[float], Awaitable[None]]


class Priority(IntEnum):
    """What the user needs most first (lower value, earlier)."""

    FINAL = 0  # the answer itself (and a stream's stop, which carries it)
    SIGN_OF_LIFE = 1  # the placeholder / "thinking…" status
    STREAM = 2  # a native stream's start
    INTERIM = 3  # progress edits and appends: skipped, never queued
    CLEANUP = 4  # deleting superseded messages


# Tokens each class leaves in a bucket for the classes above it. Few and absolute: while better
# calls wait they take each token as it refills, so a lower class never reaches its threshold
# (the reserve only has to cover the instant a better call arrives); a share of the bucket
# would lock interim edits out for a long refill after every 429, which empties the bucket.
KEEP: Mapping[Priority, float] = {
    Priority.FINAL: 0.0,
    Priority.SIGN_OF_LIFE: 1.0,
    Priority.STREAM: 2.0,
    Priority.INTERIM: 3.0,
    Priority.CLEANUP: 4.0,
}
POLL = 5.0  # seconds at most a call waits for its line to move before it looks again
MIN_WAIT = 0.05  # seconds at least between a refused take and the next look at that bucket
SATURATED = 5.0  # seconds: a call that waited this long means the account's budget is short
RECOVERED = 30.0  # seconds without a long wait or a refusal: the account has recovered
ACTIVE = 5.0  # seconds: a reply that asked for an interim call this recently still competes


@dataclass(frozen=True, slots=True)
class Limit:
    """One token bucket: ``burst`` calls at once, refilled at ``rate`` per second; kept per
    account, or per account and channel (``per_channel``)."""

    rate: float
    burst: float
    per_channel: bool = False

    @classmethod
    def per_minute(cls, calls: float, *, burst: float = 0.0, per_channel: bool = False) -> Limit:
        """Never more than ``calls`` in any rolling minute (how Slack and most platforms
        count): a bucket of ``burst`` (default half, at least 2) refilled with the rest. Half:
        a burst of questions wants a burst of signs of life, and the rolling minute allows it."""
        return cls.per_window(calls, 60.0, burst=burst, per_channel=per_channel)

    @classmethod
    def per_window(
        cls, calls: float, seconds: float, *, burst: float = 0.0, per_channel: bool = False
    ) -> Limit:
        """Never more than ``calls`` in any rolling ``seconds`` (see ``per_minute``)."""
        burst = burst or max(2.0, round(calls * 0.5))
        rate = max(calls - burst, 1.0) / seconds
        return cls(rate=rate, burst=burst, per_channel=per_channel)

    def keep(self, priority: Priority) -> float:
        """Tokens a ``priority`` call leaves in the bucket (``KEEP``): never more than the
        bucket minus one, so every class can get a token from a full bucket."""
        if priority is Priority.FINAL:
            return 0.0
        return min(KEEP[priority], max(self.burst - 1.0, 0.0))


@dataclass(order=True)
class _Waiting:
    priority: int
    seq: int


@dataclass
class _Line:
    """Calls of one method (in one channel) waiting in this process, best first."""

    waiting: list[_Waiting] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Scheduler:
    """The scheduler of one platform: an ``Account`` per workspace / bot, made on first use."""

    def __init__(
        self,
        platform: str,
        budgets: Budgets,
        limits: Mapping[str, Sequence[Limit]],
        *,
        rate_limited: RateLimited | None = None,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.platform = platform
        self.budgets = budgets
        self.limits = {method: tuple(found) for method, found in limits.items()}
        self.rate_limited = rate_limited or (lambda _exc: None)
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self._accounts: dict[str, Account] = {}

    def account(self, account: str) -> Account:
        found = self._accounts.get(account)
        if found is None:
            found = self._accounts[account] = Account(self, account)
        return found


class Account:
    """Rate-limited calls of one account (a Slack workspace, a bot, an app)."""

    def __init__(self, scheduler: Scheduler, account: str) -> None:
        self.scheduler = scheduler
        self.name = account
        self._lines: dict[tuple[str, str], _Line] = {}
        self._seq = itertools.count()
        self._turns: dict[str, _Turns] = {}
        self._refused: dict[str, dict[float, float]] = {}  # bucket → keep → refused until
        self._saturated = False
        self._short_at = -math.inf

    # ---- calls that must go: queue, wait, call -------------------------------------------

    async def call(
        self,
        method: str,
        run: Callable[[], Awaitable[T]],
        *,
        priority: Priority,
        channel: str = "",
        attempts: int = 3,
    ) -> T:
        """Wait for the slot, call ``run``; a 429 blocks the method on every replica and the
        call waits its turn again (up to ``attempts``). Other errors propagate."""
        for attempt in itertools.count(1):
            await self.slot(method, priority=priority, channel=channel)
            try:
                return await run()
            except Exception as exc:
                pause = self.scheduler.rate_limited(exc)
                if pause is None or attempt >= attempts:
                    raise
                await self.block(method, pause, channel=channel)
        raise AssertionError("unreachable")

    async def slot(
        self, method: str, *, priority: Priority, channel: str = "", within: float | None = None
    ) -> bool:
        """Until a ``method`` call (in ``channel``) fits every bucket: True, its tokens taken.
        False when ``within`` seconds passed first (nothing taken)."""
        line = self._line(method, channel)
        me = _Waiting(int(priority), next(self._seq))
        heapq.heappush(line.waiting, me)
        if line.waiting[0] is me:
            line.wake()  # a better call arrived: the one asking until now stands back
        clock = self.scheduler.clock
        started = clock()
        deadline = math.inf if within is None else started + within
        try:
            while True:
                # The first in line sleeps until its bucket has refilled (another replica's
                # take only makes that longer); the others until the line changes.
                wait, first = POLL, line.waiting[0] is me
                if first:
                    wait = await self._take(method, channel, priority)
                    if wait <= 0:
                        break
                # A bucket refills at its rate and no sooner: a longer wait than is left
                # will not shrink (another replica's take only makes it longer).
                left = deadline - clock()
                if (wait if first else 0.0) > left or left <= 0:
                    self._short(f"{method} would wait {wait:.1f} s")
                    return False
                pause = min(wait, left)
                await _changed(line, within=pause, sleep=self.scheduler.sleep)
        finally:
            line.waiting.remove(me)
            heapq.heapify(line.waiting)
            line.wake()
        self._observe(method, priority, waited=clock() - started)
        return True

    # ---- calls that may be skipped: now or never ------------------------------------------

    async def now(
        self,
        method: str,
        *,
        priority: Priority = Priority.INTERIM,
        channel: str = "",
        turn_of: Hashable | None = None,
    ) -> bool:
        """Take a ``method`` slot if one is there now; False: skip the call. ``turn_of`` (a
        reply) takes turns with the other replies. A call waiting here for the same bucket is
        not passed over: the class's reserve (``KEEP``) leaves it the tokens it waits for."""
        turns = self._turns.setdefault(method, _Turns(self.scheduler.clock))
        if turn_of is not None and not turns.may(turn_of, self._rate(method)):
            self._skipped(method, short=False)  # its turn will come: not a shortage
            return False
        if await self._take(method, channel, priority) > 0:
            self._skipped(method, short=True)
            return False
        if turn_of is not None:
            turns.granted(turn_of)
        self._observe(method, priority, waited=0.0)
        return True

    def done(self, reply: Hashable) -> None:
        """The reply has ended: it no longer takes turns."""
        for turns in self._turns.values():
            turns.forget(reply)

    # ---- 429s -----------------------------------------------------------------------------

    async def block(self, method: str, seconds: float, *, channel: str = "") -> None:
        """The platform refused for rate: no ``method`` call of this account on any replica
        for ``seconds``; in ``channel`` only when the method counts per channel (Slack's
        ~1 post a second per channel is the limit a post's 429 almost always means, and other
        channels need not wait for it)."""
        s = self.scheduler
        buckets = self._buckets(method, channel)
        if channel and any(limit.per_channel for _, limit in buckets):
            buckets = [(key, limit) for key, limit in buckets if limit.per_channel]
        for key, _ in buckets:
            await s.budgets.block(key, seconds=seconds)
            self._refused.pop(key, None)
        if s.metrics is not None:
            s.metrics.delivery_blocked.labels(s.platform, self.name, method).inc()
        self._short(f"{method} refused for rate, paused {seconds:.1f} s")

    # ---- inside ---------------------------------------------------------------------------

    async def _take(self, method: str, channel: str, priority: Priority) -> float:
        """0.0 when a token of every bucket of the call was taken, else seconds to wait. The
        per-channel bucket goes first: a channel's limit is the one most often short, and a
        token taken from it in vain costs no other channel anything."""
        budgets, clock = self.scheduler.budgets, self.scheduler.clock
        buckets = sorted(self._buckets(method, channel), key=lambda b: not b[1].per_channel)
        for key, limit in buckets:
            keep = limit.keep(priority)
            # A refusal said how long the bucket needs, and other replicas' takes only make
            # that longer: until then, refuse here without asking the database again (every
            # reply's interim edit asks; most are refused under load).
            known = self._refused.get(key, {}).get(keep, 0.0) - clock()
            if known > 0:
                return known
            wait = await budgets.take(key, rate=limit.rate, burst=limit.burst, keep=keep)
            if wait > 0:
                # Not sooner than MIN_WAIT: many calls refused together must not come back
                # at the same instant, a millisecond later, and again (a lifted budget after
                # a 429 refills in milliseconds).
                wait = max(wait, MIN_WAIT)
                if len(self._refused) > 10_000:  # per-channel buckets come and go
                    self._refused.clear()
                self._refused.setdefault(key, {})[keep] = clock() + wait
                return wait
        return 0.0

    def _buckets(self, method: str, channel: str) -> list[tuple[str, Limit]]:
        base = f"{self.scheduler.platform}/{self.name}/{method}"
        return [  # a method's second limit of a kind (per hour after per minute) gets "#1"
            ((f"{base}/{channel}" if limit.per_channel else base) + (f"#{i}" if i else ""), limit)
            for i, limit in enumerate(self.scheduler.limits.get(method, ()))
            if channel or not limit.per_channel
        ]

    def _rate(self, method: str) -> float:
        limits = self.scheduler.limits.get(method, ())
        return min((limit.rate for limit in limits if not limit.per_channel), default=math.inf)

    def _line(self, method: str, channel: str) -> _Line:
        line = self._lines.get((method, channel))
        if line is None:
            if len(self._lines) > 10_000:  # per-channel lines come and go
                self._lines = {k: v for k, v in self._lines.items() if v.waiting}
            line = self._lines[method, channel] = _Line()
        return line

    def _observe(self, method: str, priority: Priority, *, waited: float) -> None:
        s = self.scheduler
        if s.metrics is not None:
            s.metrics.delivery_calls.labels(s.platform, self.name, method, priority.name).inc()
            s.metrics.delivery_wait.labels(s.platform, self.name, priority.name).observe(waited)
        if waited >= SATURATED:
            self._short(f"{method} waited {waited:.1f} s")
        elif self._saturated and s.clock() - self._short_at >= RECOVERED:
            self._saturated = False
            log.info("%s account %s has recovered: calls go without waiting", s.platform, self.name)
            if s.metrics is not None:
                s.metrics.delivery_saturated.labels(s.platform, self.name).set(0)

    def _skipped(self, method: str, *, short: bool) -> None:
        s = self.scheduler
        if s.metrics is not None:
            s.metrics.delivery_skipped.labels(s.platform, self.name, method).inc()
        if short:
            self._short(f"{method} interim calls skipped")

    def _short(self, why: str) -> None:
        s = self.scheduler
        self._short_at = s.clock()
        if not self._saturated:
            self._saturated = True
            # INFO: a burst that the budgets absorb is the scheduler working, not a fault.
            log.info(
                "%s account %s is saturated (%s): finals go first, progress thins out",
                s.platform, self.name, why,
            )  # fmt: skip
            if s.metrics is not None:
                s.metrics.delivery_saturated.labels(s.platform, self.name).set(1)


class _Turns:
    """Interim calls of one method taken in turns by the replies that want them: with N
    replies competing for ``rate`` calls a second, each may ask once every N / rate s."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._asked: dict[Hashable, float] = {}
        self._granted: dict[Hashable, float] = {}
        self._pruned = -math.inf

    def may(self, reply: Hashable, rate: float) -> bool:
        now = self._clock()
        self._asked[reply] = now
        if now - self._pruned >= 1.0:  # not on every call: that is every reply, every edit
            self._pruned = now
            for key in [key for key, at in self._asked.items() if at < now - ACTIVE]:
                self.forget(key)
        competing = len(self._asked)
        turn = competing / rate if rate > 0 and competing > 1 else 0.0
        return now - self._granted.get(reply, -math.inf) >= turn

    def granted(self, reply: Hashable) -> None:
        self._granted[reply] = self._clock()

    def forget(self, reply: Hashable) -> None:
        self._asked.pop(reply, None)
        self._granted.pop(reply, None)


async def _changed(line: _Line, *, within: float, sleep: Sleep) -> None:
    """Until a call of the line arrives or leaves, or ``within`` seconds (``sleep``: the
    scheduler's, so tests on a fake clock move it instead of waiting)."""
    event = line.changed
    waiter = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(sleep(max(within, 0.0)))
    try:
        await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, timer):
            task.cancel()
        await asyncio.gather(waiter, timer, return_exceptions=True)
