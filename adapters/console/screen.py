"""The terminal chat on a TTY: a line editor with history (prompt_toolkit) whose keys typed
during an answer wait, unseen, for the next prompt; answers rendered as Markdown (rich)."""

from __future__ import annotations

import sys
import termios
from collections.abc import AsyncGenerator
from pathlib import Path

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

from bot.contract import ReplyCapabilities
from bot.models import Answer

PROMPT = "you> "


class MarkdownReply:
    """Shows the answer's Markdown rendered while it grows: the last screenful live (so the new
    words stay in sight), then the whole answer once it is done."""

    def __init__(self, console: Console) -> None:
        # Each update renders the whole answer again: ten times a second is plenty to read.
        self.capabilities = ReplyCapabilities(can_edit=True, min_interval=0.1)
        self.failed = False
        self._console = console
        self._live: Live | None = None
        self._text = ""

    async def start(self) -> None:
        self._show(Text("…", style="dim"))

    async def update(self, text: str) -> None:
        self._text = text
        self._show(Tail(Markdown(text), height=max(self._console.height - 2, 3)))

    async def status(self, text: str) -> None:
        if not self._text and text:
            self._show(Text(text, style="dim"))

    async def finish(self, text: str, answer: Answer) -> None:
        self._close()
        self._console.print(Markdown(text))
        footer = to_footer(answer)
        if footer:
            self._console.print(footer, style="dim", markup=False)

    async def fail(self, text: str, notice: str) -> None:
        self.failed = True
        self._close()
        if text:
            self._console.print(Markdown(text))
        self._console.print(notice, style="yellow", markup=False)

    def _show(self, renderable: RenderableType) -> None:
        if self._live is None:
            self._live = Live(
                renderable,
                console=self._console,
                auto_refresh=False,  # the reply's own pace (min_interval) drives the refreshes
                transient=True,  # the live tail gives way to the whole answer at the end
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)
        else:
            self._live.update(renderable, refresh=True)

    def _close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def to_footer(answer: Answer) -> str:
    """Files and knowledge-base sources under an answer, as plain lines."""
    lines = [f"[file] {f.filename or f.type}: {f.url}" for f in answer.files]
    names = [r.get("document_name") for r in answer.retriever_resources]
    sources = list(dict.fromkeys(str(n) for n in names if n))
    if sources:
        lines.append("Sources: " + ", ".join(sources))
    return "\n".join(lines)


class Tail:
    """The last ``height`` lines of a renderable: what a live region can show of a long answer
    without scrolling (a taller live region would leave copies of itself in the scrollback)."""

    def __init__(self, renderable: RenderableType, *, height: int) -> None:
        self.renderable = renderable
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        for line in lines[-self.height :]:
            yield from line
            yield Segment.line()


async def edited_lines(history: Path | None = None) -> AsyncGenerator[str]:
    """Lines typed at a prompt with editing and history (kept across runs in the per-user data
    folder). Between prompts the terminal stops echoing and stops waiting for Enter, so keys
    typed while an answer streams stay in the terminal's input buffer, out of the answer, and
    the next prompt shows them, as shells do with type-ahead. Ctrl-D or Ctrl-C at the prompt
    ends the chat."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    session: PromptSession[str] = PromptSession(history=FileHistory(str(history or _history())))
    fd = sys.stdin.fileno()
    cooked = termios.tcgetattr(fd)
    try:
        while True:
            try:
                # handle_sigint=False: Ctrl-C is a key here (raw mode), and while an answer
                # streams it must reach the chat's own SIGINT handler (stop the answer).
                line = await session.prompt_async(
                    PROMPT, handle_sigint=False, set_exception_handler=False
                )
            except (EOFError, KeyboardInterrupt):
                return
            hold_keys(fd)
            yield line
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, cooked)


def hold_keys(fd: int) -> None:
    """No echo, no line discipline: typed keys wait unseen. Signals stay on (Ctrl-C stops)."""
    attributes = termios.tcgetattr(fd)
    attributes[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(fd, termios.TCSANOW, attributes)


def _history() -> Path:
    from platformdirs import user_data_path

    folder = user_data_path("difybot", appauthor=False)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "chat_history"
