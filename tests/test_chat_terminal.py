"""``difybot chat`` on a real terminal, driven through tmux: history recall with the arrow keys,
keys typed during an answer held back for the next prompt, Markdown rendered, the chat's own
commands kept from Dify, and no log line on the screen. Every wait is on what the screen shows."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer, HttpError
from tests.test_cli_e2e import clean_env

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

SLOW = [f"part{i} " for i in range(12)]  # 12 chunks, 0.4 s apart: ~5 s to type ahead in


class Terminal:
    """One tmux server of our own (``-L``), one 100x30 window running the command."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.server = f"difybot-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.cwd = cwd

    async def tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.server, *args, env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def start(self, command: str) -> None:
        self.status = self.cwd / f"{self.server}.status"  # the command's exit status, once out
        wrapped = f"{command}; echo $? > {shlex.quote(str(self.status))}"
        await self.tmux("-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30",
                        "sh", "-c", wrapped)  # fmt: skip
        await self.tmux("set-option", "-g", "remain-on-exit", "on")

    async def screen(self) -> str:
        return await self.tmux("capture-pane", "-p", "-J")

    async def keys(self, *keys: str) -> None:
        await self.tmux("send-keys", *keys)

    async def until(self, shown: Callable[[str], bool], what: str, limit: float = 30) -> str:
        """Polls the screen until ``shown`` holds (tmux has no event for "text appeared")."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            screen = await self.screen()
            if shown(screen):
                return screen
            assert loop.time() < deadline, f"never saw {what}:\n{screen}"
            await asyncio.sleep(0.05)

    async def prompts(self, count: int) -> str:
        return await self.until(lambda s: s.count("you>") >= count, f"prompt {count}")

    async def exit_status(self) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not self.status.is_file() or not self.status.read_text().strip():
            assert loop.time() < deadline, "the chat did not exit"
            await asyncio.sleep(0.05)
        return int(self.status.read_text())

    async def close(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.server, "kill-server", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[tuple[Terminal, FakeDify]]:
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
                        TERM="xterm-256color")  # fmt: skip
        terminal = Terminal(env, tmp_path)
        await terminal.start(f"{sys.executable} -m difybot.cli chat")
        try:
            yield terminal, dify
        finally:
            await terminal.close()


def questions(dify: FakeDify) -> list[str]:
    return [str(r.json["query"]) for r in dify.requests_to("/chat-messages")]


async def test_type_ahead_waits_for_the_next_prompt_and_history_recalls(
    chat: tuple[Terminal, FakeDify],
) -> None:
    term, dify = chat
    dify.enqueue("/chat-messages", Answer(chunks=["A **bold** start. ", *SLOW], delay=0.4))
    await term.prompts(1)
    await term.keys("tell me a long story", "Enter")
    await term.until(lambda s: "part0" in s, "the answer streaming")
    await term.keys("typed ahead", "Enter")  # while the answer streams
    during = await term.screen()
    assert "typed ahead" not in during, "keys typed during an answer must not show inside it"
    screen = await term.until(lambda s: "you> typed ahead" in s and "echo: typed ahead" in s,
                              "the held-back question asked at the next prompt")  # fmt: skip
    answer = screen[screen.index("A bold start.") : screen.index("you> typed ahead")]
    assert "part11" in answer and "typed" not in answer  # the whole answer, nothing mixed in
    assert "**" not in screen  # Markdown rendered, not shown raw
    assert questions(dify) == ["tell me a long story", "typed ahead"]

    await term.prompts(3)
    await term.keys("Up", "Up")  # back through the history, to the first question
    await term.until(lambda s: s.rstrip().endswith("you> tell me a long story"), "recall")
    await term.keys("Enter")
    await term.until(lambda s: s.count("you>") >= 4, "the recalled question answered")
    assert questions(dify)[-1] == "tell me a long story"
    assert "^[[A" not in await term.screen()

    await term.keys("/quit", "Enter")
    assert await term.exit_status() == 0


async def test_local_commands_stay_local_and_failures_show_no_log_line(
    chat: tuple[Terminal, FakeDify],
) -> None:
    term, dify = chat
    dify.enqueue("/chat-messages", HttpError(500, "internal_server_error", "boom"))
    await term.prompts(1)
    await term.keys("/help", "Enter")
    await term.until(lambda s: "↑ and ↓ recall earlier questions" in s, "the help")
    await term.keys("/bogus", "Enter")
    await term.until(lambda s: "Unknown command /bogus." in s, "the unknown command")
    await term.keys("this one fails", "Enter")
    screen = await term.until(lambda s: "something went wrong" in s and s.count("you>") >= 4,
                              "the apology and the next prompt")  # fmt: skip
    assert "WARNING" not in screen and "trace=" not in screen  # the log went to its file
    assert questions(dify) == ["this one fails"]  # /help and /bogus never reached Dify
    await term.keys("C-d")
    assert await term.exit_status() == 0


async def test_a_continued_conversation_is_announced(
    tmp_path: Path, chat: tuple[Terminal, FakeDify]
) -> None:
    term, _ = chat
    await term.prompts(1)
    await term.keys("remember me", "Enter")
    await term.prompts(2)
    await term.keys("/quit", "Enter")
    assert await term.exit_status() == 0
    again = Terminal(term.env, tmp_path)
    await again.start(f"{sys.executable} -m difybot.cli chat")
    try:
        screen = await again.prompts(1)
        assert "(Continuing the conversation from " in screen and "/new starts a new one" in screen
    finally:
        await again.close()
