"""Progressive replies: coalesce answer deltas into time-throttled edits, then one final answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.contract import FormReply, FormView, Reply
from bot.models import Answer
from bot.ops.effort import best_effort, cancelled

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class ProgressiveReply:
    """Shows an answer as it grows: at most one edit per interval, never two edits in flight.

    Every delta only changes ``text``; an edit task sends the whole text so far, so bursts
    coalesce into one edit. When an edit is due but the interval has not passed, a timer sends
    the latest text when it has, so a pause in the stream never hides text already received.
    ``finish``/``fail`` wait for the edit in flight and always deliver the whole text.

    ``note`` adds a line shown above the answer from then on: in the final answer too (a file
    left out), or only while it grows (``interim``: an answer that starts again). ``on_shown``
    is called once, after the first edit that showed some of the answer (the journal remembers
    it, for a replica that takes over).
    """

    def __init__(
        self,
        reply: Reply,
        *,
        interval: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        stretch: Callable[[], float] | None = None,
        on_shown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._reply = reply
        self._on_shown = on_shown
        self._notes: list[str] = []
        self._interim_notes: set[str] = set()
        self._started = False  # notes wait for the reply's start (its placeholder, if any)
        self._stretch = stretch  # bot.ops.pace.LoadGauge.stretch: longer intervals under load
        caps = reply.capabilities
        self._editable = caps.can_edit
        self._interval = caps.min_interval if interval is None else interval
        self._clock = clock
        self._sleep = sleep
        self.text = ""
        self.edits = 0
        self._status = ""
        self._shown_text = ""
        self._shown_status = ""
        self._last_edit: float | None = None
        self._edit: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        # Called with the answer text before each visible edit (the run keeps it for a taker).
        self.before_edit: Callable[[str], Awaitable[None]] | None = None

    async def start(self) -> None:
        """A sign of life; a platform hiccup here must not cost the answer."""
        with best_effort("show the start of a reply", log):
            await self._reply.start()
        self._started = True
        if self._notes:
            self._schedule()

    def preset(self, text: str) -> None:
        """The reply already shows ``text`` (a run followed again in the reply it paused in)."""
        self.text = text
        self._shown_text = self._visible(text)

    @property
    def raw(self) -> Reply:
        """The platform's reply this one drives."""
        return self._reply

    @property
    def shows_forms(self) -> bool:
        return isinstance(self._reply, FormReply)

    def add(self, delta: str) -> None:
        if delta:
            self.text += delta
            self._schedule()

    def replace(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._schedule()

    def note(self, line: str, *, interim: bool = False) -> None:
        if line and line not in self._notes:
            self._notes.append(line)
            if interim:
                self._interim_notes.add(line)
            if self._started:
                self._schedule()

    def _visible(self, text: str, *, final: bool = False) -> str:
        """The notes, then the answer (each paragraph apart)."""
        notes = [n for n in self._notes if not (final and n in self._interim_notes)]
        return "\n\n".join([*notes, text] if text else notes)

    def set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._schedule()

    async def finish(self, answer: Answer, *, text: str | None = None) -> None:
        await self._settle()
        final = self._visible(self.text if text is None else text, final=True)
        await self._reply.finish(final, answer)

    async def show_form(self, form: FormView) -> None:
        """The answer so far and a form with the platform's buttons (a ``FormReply``)."""
        await self._settle()
        assert isinstance(self._reply, FormReply)
        await self._reply.show_form(self._visible(self.text, final=True), form)

    async def fail(self, notice: str) -> None:
        await self._settle()
        await self._reply.fail(self._visible(self.text, final=True), notice)

    async def close(self) -> None:
        """Stop edits without a final message (cancellation paths)."""
        self._closed = True
        await cancelled(self._timer, self._edit)

    def _schedule(self) -> None:
        if not self._editable or self._closed:
            return
        if self._edit is not None or self._timer is not None:
            return  # the edit in flight, or the timer, will pick up the newest text
        due = self._due_at()
        if due <= self._clock():
            self._edit = asyncio.create_task(self._send())
        else:
            self._timer = asyncio.create_task(self._after(due))

    def _due_at(self) -> float:
        if self._last_edit is None:
            return float("-inf")  # the first text goes at once, whatever the load
        stretch = self._stretch() if self._stretch is not None else 1.0
        return self._last_edit + self._interval * stretch

    async def _after(self, due: float) -> None:
        wait = due - self._clock()
        if wait > 0:
            await self._sleep(wait)
        self._timer = None
        self._schedule()

    async def _send(self) -> None:
        if self._closed:  # the answer ended before this edit began: the final carries its text
            self._edit = None
            return
        try:
            with best_effort("show an interim edit (the final answer carries the text)", log):
                await self._show()
        finally:
            self._edit = None
        if self._visible(self.text) != self._shown_text or self._status != self._shown_status:
            self._schedule()

    async def _show(self) -> None:
        """One interim edit: the status line if it changed, then the text if it changed."""
        self._last_edit = self._clock()
        if self._status != self._shown_status:
            self._shown_status = self._status
            await self._reply.status(self._status)
        visible = self._visible(self.text)
        if visible != self._shown_text:
            self._shown_text = visible
            self.edits += 1
            if self.before_edit is not None:
                await self.before_edit(self.text)
            await self._reply.update(visible)
            await self._shown()

    async def _shown(self) -> None:
        """After the first edit that showed answer text (a note alone does not count)."""
        if self._on_shown is not None and self.text:
            on_shown, self._on_shown = self._on_shown, None
            with best_effort("record that the answer is shown", log):
                await on_shown()

    async def _settle(self) -> None:
        """No more interim edits: cancel the timer, let the edit in flight land."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._edit is not None:
            await asyncio.shield(self._edit)
        if self._shown_status:
            with best_effort("clear the status line", log):
                await self._reply.status("")
