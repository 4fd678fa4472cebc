"""Terminal chat: questions from stdin (a TTY or a pipe), answers streamed to stdout."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from typing import TextIO

from bot.dispatcher import Dispatcher
from bot.errors import DifyError
from bot.models import Answer, ConversationKey, IncomingMessage, Scope
from bot.protocols import ReplyCapabilities

PLATFORM = "console"
_COMMANDS_HELP = "/new starts a new conversation, /quit leaves; Ctrl-C stops an answer."


class ConsoleReply:
    """Appends what is new to the terminal; a replaced answer is printed again in full."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.capabilities = ReplyCapabilities(can_edit=True, min_interval=0.05)
        self._out = out
        self._tty = tty
        self._printed = ""
        self._status_shown = False

    async def start(self) -> None:
        self._show_status("…")

    async def update(self, text: str) -> None:
        self._clear_status()
        if text.startswith(self._printed):
            self._write(text[len(self._printed) :])
        else:  # Dify replaced the answer (moderation): show the new one whole
            self._write("\n" + text)
        self._printed = text

    async def status(self, text: str) -> None:
        if not self._printed:
            self._show_status(text)

    async def finish(self, text: str, answer: Answer) -> None:
        await self.update(text)
        footer = _footer(answer)
        self._write("\n" + (footer + "\n" if footer else ""))

    async def fail(self, text: str, notice: str) -> None:
        await self.update(text)
        self._write(("\n" if text else "") + notice + "\n")

    def _show_status(self, text: str) -> None:
        if self._tty and text:
            self._write(f"\r\x1b[2K\x1b[2m{text}\x1b[0m")
            self._status_shown = True
        elif self._status_shown:
            self._clear_status()

    def _clear_status(self) -> None:
        if self._status_shown:
            self._write("\r\x1b[2K")
            self._status_shown = False

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()


def _footer(answer: Answer) -> str:
    lines = [f"[file] {f.filename or f.type}: {f.url}" for f in answer.files]
    names = [r.get("document_name") for r in answer.retriever_resources]
    sources = list(dict.fromkeys(str(n) for n in names if n))
    if sources:
        lines.append("Sources: " + ", ".join(sources))
    return "\n".join(lines)


class ConsoleChat:
    """The terminal adapter: same dispatcher, same progressive replies as every platform."""

    def __init__(
        self, dispatcher: Dispatcher, *, out: TextIO, tty: bool, user: str | None = None
    ) -> None:
        self._dispatcher = dispatcher
        self._out = out
        self._tty = tty
        self._user = user or getpass.getuser()
        self.key = ConversationKey(PLATFORM, "local", Scope.USER, self._user)
        self._answering: asyncio.Task[None] | None = None

    async def run(self, lines: AsyncIterator[str]) -> None:
        if self._tty:
            self._out.write(f"Chatting with your Dify app. {_COMMANDS_HELP}\n")
            await self._greet()
        while True:
            self._prompt()
            line = await anext(lines, None)
            if line is None:
                break
            question = line.strip()
            if question in ("/quit", "/exit"):
                break
            if question == "/new":
                await self._dispatcher.reset(self.key)
                self._out.write(self._dispatcher.texts.get("reset") + "\n")
            elif question:
                await self.ask(question)

    async def _greet(self) -> None:
        """The app's opening statement and starter questions, as Dify's own web chat shows
        them; a slow or unreachable Dify must not hold up the prompt."""
        try:
            async with asyncio.timeout(5):
                parameters = await self._dispatcher.dify_for(self.key).parameters()
        except (DifyError, TimeoutError):
            return
        opening = str(parameters.get("opening_statement") or "").strip()
        starters = [str(q) for q in parameters.get("suggested_questions") or () if q]
        if opening:
            self._out.write(f"\n{opening}\n")
        for question in starters:
            self._out.write(f"  • {question}\n")

    async def ask(self, question: str) -> None:
        message = IncomingMessage(
            platform=PLATFORM,
            workspace="local",
            user_id=self._user,
            text=question,
            key=self.key,
            message_id=uuid.uuid4().hex,
        )
        reply = ConsoleReply(self._out, tty=self._tty)
        self._answering = self._dispatcher.submit(message, reply)
        try:
            await self._answering
        finally:
            self._answering = None

    def interrupt(self) -> bool:
        """Ctrl-C: stop the answer being streamed (True), or tell the caller to leave (False)."""
        if self._answering is None:
            return False
        task = asyncio.ensure_future(self._dispatcher.stop(self.key))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return True

    def _prompt(self) -> None:
        if self._tty:
            self._out.write("\nyou> ")
            self._out.flush()


async def stdin_lines() -> AsyncIterator[str]:
    """Lines from stdin without blocking the loop. A daemon reader thread works for TTYs and
    pipes alike and, unlike the default executor, never holds up exit while blocked in read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while we were reading
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, "")

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while line := await queue.get():
        yield line


async def run_console(dispatcher: Dispatcher) -> None:
    """``difybot chat``: Ctrl-C stops the current answer, or quits at the prompt."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    chat = ConsoleChat(dispatcher, out=sys.stdout, tty=tty)
    runner = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        if not chat.interrupt() and runner is not None:
            runner.cancel()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await chat.run(stdin_lines())
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if tty:
            sys.stdout.write("\n")
