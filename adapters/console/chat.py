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
from datetime import datetime
from typing import TextIO

from rich.console import Console

from adapters.console.screen import MarkdownReply, to_footer
from bot.contract import Delivery, Inbox, Platform, Reply, ReplyCapabilities
from bot.models import Answer, ConversationKey, IncomingMessage, Scope

PLATFORM = "console"
WORKSPACE = "local"
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
    """The terminal adapter: same inbox, same journal, same progressive replies as every
    platform. Its answers are never taken over by another process (``takeover=False``): the
    terminal that asked is the only place they can be shown."""

    name = PLATFORM

    def __init__(
        self,
        inbox: Inbox,
        *,
        out: TextIO | None = None,
        tty: bool,
        screen: Screen | None = None,
        user: str | None = None,
        continued: datetime | None = None,
    ) -> None:
        self._inbox = inbox
        self._screen = screen or Screen(out or sys.stdout, out or sys.stdout)
        self.tty = tty
        self._user = user or getpass.getuser()
        self.continued = continued
        self.key = ConversationKey(PLATFORM, WORKSPACE, Scope.USER, self._user)
        self._reply: ConsoleReply | MarkdownReply | None = None
        self._answering: asyncio.Task[None] | None = None
        self._stopped = False
        self.unanswered = 0  # questions that got no answer (an error, Dify unreachable)

    def platform(self) -> Platform:
        return Platform(name=PLATFORM, adapter=self, reply=self.reply, takeover=False)

    async def start(self) -> None:
        """Nothing to open: the terminal is there."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def close(self) -> None:
        """Nothing to close."""

    def reply(self, delivery: Delivery) -> Reply:
        """The reply of the question being asked (``takeover=False``: never another's)."""
        assert self._reply is not None, "the terminal answers only the question it asked"
        return self._reply

    async def run(self, lines: AsyncGenerator[str]) -> None:
        if self.tty:
            self._screen.say(f"Chatting with your Dify app. {HELP.splitlines()[0]}")
            await self._greet()
        if self.continued is not None:
            when = self.continued.astimezone().strftime("%Y-%m-%d %H:%M")
            self._screen.note(f"(Continuing the conversation from {when}; /new starts a new one.)")
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
            await self._inbox.reset(self.key)
            self._screen.say(self._inbox.text("reset"))
        elif command == "/help":
            self._screen.say(HELP)
        else:
            self._screen.say(f"Unknown command {command}. {HELP.splitlines()[0]}")
        return True

    async def _greet(self) -> None:
        """The app's opening statement and starter questions, as Dify's own web chat shows
        them (an unreachable Dify shows nothing: the facts come back empty)."""
        facts = await self._inbox.facts(PLATFORM, workspace=WORKSPACE)
        if facts.opening_statement:
            self._screen.say(f"\n{facts.opening_statement}")
        for question in facts.starter_questions:
            self._screen.say(f"  • {question}")

    async def ask(self, question: str) -> None:
        message = IncomingMessage(
            platform=PLATFORM,
            workspace=WORKSPACE,
            user_id=self._user,
            text=question,
            key=self.key,
            message_id=uuid.uuid4().hex,
        )
        reply: ConsoleReply | MarkdownReply
        if self._screen.rich is not None:
            reply = MarkdownReply(self._screen.rich)
        else:
            reply = ConsoleReply(self._screen.out, tty=self.tty)
        self._reply, self._stopped = reply, False
        accepted = await self._inbox.accept(message, where={})
        self._answering = accepted.answer
        try:
            if self._answering is not None:
                await self._answering
        finally:
            self._answering = self._reply = None
        if reply.failed and not self._stopped:
            self.unanswered += 1

    def interrupt(self) -> bool:
        """Ctrl-C: stop the answer being streamed (True), or tell the caller to leave (False)."""
        if self._answering is None:
            return False
        self._stopped = True
        task = asyncio.ensure_future(self._inbox.stop(self.key))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return True

    @classmethod
    def of_process(cls, inbox: Inbox, *, continued: datetime | None = None) -> ConsoleChat:
        """The chat on this process's terminal (or pipes)."""
        tty = sys.stdin.isatty() and sys.stdout.isatty()
        return cls(inbox, tty=tty, screen=Screen.of_process(tty=tty), continued=continued)


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


async def run_console(chat: ConsoleChat) -> int:
    """``difybot chat``: Ctrl-C stops the current answer, or quits at the prompt. The exit
    status is 1 when questions came through a pipe and one of them got no answer."""
    tty = chat.tty
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
