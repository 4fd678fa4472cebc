"""Terminal chat: questions from a line editor on a TTY or from a pipe, answers streamed back
(Markdown rendered on a TTY, raw when piped), and the chat's own commands."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import signal
import sys
import threading
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console

from adapters.console.screen import MarkdownReply, to_footer
from bot.contract import ReplyCapabilities
from bot.delivery.inbox import Dispatcher
from bot.errors import DifyError
from bot.models import Answer, ConversationKey, IncomingMessage, Scope
from storage.conversations import ConversationStore

PLATFORM = "console"
HELP = (
    "Commands: /help shows this, /new starts a new conversation, /quit leaves (or Ctrl-D).\n"
    "Ctrl-C stops an answer; ↑ and ↓ recall earlier questions; what you type while an answer "
    "streams waits for the next prompt."
)
_COMMAND = re.compile(r"^/[A-Za-z][\w-]*$")  # one word after a slash: ours, never Dify's


class ConsoleReply:
    """Appends what is new to a pipe (or a dumb terminal); a replaced answer is printed again."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.capabilities = ReplyCapabilities(can_edit=True, min_interval=0.05)
        self.failed = False
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
        footer = to_footer(answer)
        self._write("\n" + (footer + "\n" if footer else ""))

    async def fail(self, text: str, notice: str) -> None:
        self.failed = True
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


@dataclass
class Screen:
    """Where the chat writes: ``out`` for answers; ``notes`` for lines that are not answers
    (the same terminal on a TTY, stderr when piped so the output stays answers only);
    ``rich`` set on a TTY, where answers are rendered as Markdown."""

    out: TextIO
    notes: TextIO
    rich: Console | None = None

    @classmethod
    def of_process(cls, *, tty: bool) -> Screen:
        if tty:
            return cls(sys.stdout, sys.stdout, Console(highlight=False))
        return cls(sys.stdout, sys.stderr)

    def say(self, text: str) -> None:
        """A line that answers a line typed (a command's reply, the greeting)."""
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """A line nobody asked for: kept out of piped answers."""
        self.notes.write(text + "\n")
        self.notes.flush()


class ConsoleChat:
    """The terminal adapter: same dispatcher, same progressive replies as every platform."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        out: TextIO | None = None,
        tty: bool,
        screen: Screen | None = None,
        store: ConversationStore | None = None,
        user: str | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._screen = screen or Screen(out or sys.stdout, out or sys.stdout)
        self._tty = tty
        self._store = store
        self._user = user or getpass.getuser()
        self.key = ConversationKey(PLATFORM, "local", Scope.USER, self._user)
        self._answering: asyncio.Task[None] | None = None
        self._stopped = False
        self.unanswered = 0  # questions that got no answer (an error, Dify unreachable)

    async def run(self, lines: AsyncGenerator[str]) -> None:
        if self._tty:
            self._screen.say(f"Chatting with your Dify app. {HELP.splitlines()[0]}")
            await self._greet()
        await self._tell_if_continued()
        async with contextlib.aclosing(lines):  # the line editor gives the terminal back at once
            async for line in lines:
                question = line.strip()
                if _COMMAND.match(question):
                    if not await self._command(question.lower()):
                        break
                elif question:
                    await self.ask(question)

    async def _command(self, command: str) -> bool:
        """A chat command, never sent to Dify; False to leave."""
        if command in ("/quit", "/exit"):
            return False
        if command == "/new":
            await self._dispatcher.reset(self.key)
            self._screen.say(self._dispatcher.texts.get("reset"))
        elif command == "/help":
            self._screen.say(HELP)
        else:
            self._screen.say(f"Unknown command {command}. {HELP.splitlines()[0]}")
        return True

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
            self._screen.say(f"\n{opening}")
        for question in starters:
            self._screen.say(f"  • {question}")

    async def _tell_if_continued(self) -> None:
        """A stored conversation goes on where it stopped: say so, and how to start over."""
        if self._store is None or not await self._store.get(self.key):
            return
        found = await self._store.list(platform=PLATFORM, user=self._user, limit=1)
        when = found[0].updated_at.astimezone().strftime("%Y-%m-%d %H:%M") if found else "before"
        self._screen.note(f"(Continuing the conversation from {when}; /new starts a new one.)")

    async def ask(self, question: str) -> None:
        message = IncomingMessage(
            platform=PLATFORM,
            workspace="local",
            user_id=self._user,
            text=question,
            key=self.key,
            message_id=uuid.uuid4().hex,
        )
        reply: ConsoleReply | MarkdownReply
        if self._screen.rich is not None:
            reply = MarkdownReply(self._screen.rich)
        else:
            reply = ConsoleReply(self._screen.out, tty=self._tty)
        self._stopped = False
        self._answering = self._dispatcher.submit(message, reply)
        try:
            await self._answering
        finally:
            self._answering = None
        if reply.failed and not self._stopped:
            self.unanswered += 1

    def interrupt(self) -> bool:
        """Ctrl-C: stop the answer being streamed (True), or tell the caller to leave (False)."""
        if self._answering is None:
            return False
        self._stopped = True
        task = asyncio.ensure_future(self._dispatcher.stop(self.key))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return True


async def stdin_lines() -> AsyncGenerator[str]:
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


async def run_console(dispatcher: Dispatcher, *, store: ConversationStore | None = None) -> int:
    """``difybot chat``: Ctrl-C stops the current answer, or quits at the prompt. The exit
    status is 1 when questions came through a pipe and one of them got no answer."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    chat = ConsoleChat(dispatcher, tty=tty, screen=Screen.of_process(tty=tty), store=store)
    runner = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        if not chat.interrupt() and runner is not None:
            runner.cancel()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            if tty:
                from adapters.console.screen import edited_lines

                await chat.run(edited_lines())
            else:
                await chat.run(stdin_lines())
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if tty:
            sys.stdout.write("\n")
    return 1 if chat.unanswered and not tty else 0
