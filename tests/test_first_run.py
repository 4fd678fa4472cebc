"""The first fifteen minutes (issue 14), end to end through the real ``difybot`` command: every
mistake a new user makes ends in one line naming the variable or service and the fix, with exit
status 2 for configuration and 1 for a dependency, and no traceback or asyncio noise."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.models import ConversationKey, Scope
from storage.conversations import ConversationStore
from storage.db import create_engine
from storage.migrate import upgrade
from storage.units import Database
from tests.conftest import POSTGRES_URL
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import HttpError
from tests.test_cli_e2e import REPO, clean_env, difybot

NOISE = ("Traceback", "Unclosed", "Task was destroyed", "Exception ignored", "Error in sys")
PG_HOST = "postgresql+asyncpg://postgres@127.0.0.1:5432"


async def run(
    *args: str, env: dict[str, str], cwd: Path, stdin: bytes = b"", limit: float = 60
) -> tuple[int, str, str]:
    proc = await difybot(*args, env=env, cwd=cwd)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    finally:
        if proc.returncode is None:  # still running: that is the failure being tested
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(), err.decode()


def one_line(err: str) -> str:
    """The whole of stderr, which must be a single line and no noise."""
    assert not any(word in err for word in NOISE), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.strip()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


@contextlib.contextmanager
def taken_port(port: int = 0) -> Iterator[int]:
    """``port`` (any free one for 0) held by another listener; a port someone else already
    holds is taken just the same."""
    holder = socket.socket()
    try:
        holder.bind(("0.0.0.0", port))
        holder.listen()
    except OSError:
        holder.close()
        yield port  # in use already
        return
    with holder:
        yield holder.getsockname()[1]


# ---- unreachable PostgreSQL, a wrong role ------------------------------------------------------


@pytest.mark.parametrize(
    "command", [("serve",), ("chat",), ("db", "current"), ("conversations", "list")]
)
async def test_an_unreachable_database_is_one_line_for_every_command(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    with closed_port() as port:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/difybot"
        env = clean_env(tmp_path, DIFY_API_KEY="app-k", DATABASE_URL=url, PORT="0")
        code, _, err = await run(*command, env=env, cwd=tmp_path)
    assert code == 1
    assert one_line(err) == (
        f"difybot: cannot reach the database at {url}: connection refused; check DATABASE_URL "
        "and that the server is running"
    )


@pytest.mark.skipif(not POSTGRES_URL, reason="needs the PostgreSQL server of TEST_DATABASE_URL")
@pytest.mark.parametrize("command", [("serve",), ("db", "current")])
async def test_a_role_the_server_refuses_is_a_configuration_error(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = POSTGRES_URL.replace("//postgres@", "//difybot_no_such_role@", 1)
    env = clean_env(tmp_path, DIFY_API_KEY="app-k", DATABASE_URL=url, PORT="0")
    code, _, err = await run(*command, env=env, cwd=tmp_path)
    assert code == 2
    line = one_line(err)
    assert line.startswith("difybot: configuration error: DATABASE_URL: ")
    assert 'role "difybot_no_such_role" does not exist' in line


# ---- port already in use ---------------------------------------------------------------------


async def test_a_port_in_use_is_one_line_and_leaves_nothing_open(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        with taken_port() as port:
            env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
                            PORT=str(port))  # fmt: skip
            code, _, err = await run("serve", env=env, cwd=tmp_path)
    assert code == 1
    assert one_line(err) == (
        f"difybot: port {port} on 0.0.0.0 is already in use by another program; set PORT to a "
        f"free port (e.g. PORT={port + 1}) or stop the other program"
    )
    assert not dify.requests, "a port in use fails before Dify is asked anything"


# ---- settings validated at load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BOT_TEXTS", "{bad", "BOT_TEXTS: not valid JSON (Expecting property name"),
        (
            "BOT_TEXTS",
            '{"erorr": "Oops"}',
            "BOT_TEXTS: unknown key 'erorr' (did you mean 'error'?)",
        ),
        ("BOT_TEXTS", '{"file_too_large": "{nme} is too big"}', "uses {nme}, which it does not"),
        ("DIFY_APP_MODE", "bogus", "DIFY_APP_MODE: Input should be '', 'chat', 'agent-chat'"),
        ("DIFY_CONNECT_TIMEOUT", "soon", "DIFY_CONNECT_TIMEOUT: Input should be a valid number"),
    ],
)
async def test_a_malformed_setting_stops_startup_in_one_line(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        env[variable] = value
        code, out, err = await run("chat", env=env, cwd=tmp_path, stdin=b"hello\n")
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("difybot: configuration error: ") and said in line
    assert not dify.requests_to("/chat-messages")


async def test_a_misspelt_variable_in_env_is_named_with_the_closest_one(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "SLAK_BOT_TOKEN=xoxb-typo\nDIFY_API_KY=app-typo\nPOSTGRES_PASSWORD=for-compose\n",
        encoding="utf-8",
    )
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        code, out, err = await run("chat", env=env, cwd=tmp_path, stdin=b"hello\n")
    assert code == 0 and out == "echo: hello\n"
    assert (
        "SLAK_BOT_TOKEN is not a difybot setting and is ignored; did you mean SLACK_BOT_TOKEN?"
        in err
    )
    assert "DIFY_API_KY is not a difybot setting and is ignored; did you mean DIFY_API_KEY?" in err
    assert "POSTGRES" not in err  # docker/compose.yml's own variable belongs in .env too
    assert "xoxb-typo" not in err


async def test_check_json_stays_json_on_a_configuration_error(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DIFY_API_KEY="app-k", BOT_TEXTS="{bad")
    code, out, err = await run("check", "--json", env=env, cwd=tmp_path)
    assert code == 2 and err == ""
    assert json.loads(out)["error"]["kind"] == "configuration"
    assert json.loads(out)["error"]["message"].startswith("BOT_TEXTS: not valid JSON")


# ---- connection errors say what happened ------------------------------------------------


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A listener whose accept queue is full: connecting hangs until the client gives up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


async def test_connection_failures_name_their_reason(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        with closed_port() as refused, unanswered_port() as silent:
            cases = {
                f"http://127.0.0.1:{refused}/v1": "connection refused",
                "http://no-such-host.invalid/v1": "unknown host",
                f"https://127.0.0.1:{dify.base_url.rsplit(':', 1)[1]}": "TLS failure",  # http port
                f"http://127.0.0.1:{silent}/v1": "timed out",
            }
            for base, reason in cases.items():
                env = clean_env(tmp_path, DIFY_API_KEY="app-k", DIFY_API_BASE=base,
                                DIFY_CONNECT_TIMEOUT="0.5", DIFY_MAX_RETRIES="0")  # fmt: skip
                code, _, err = await run("chat", env=env, cwd=tmp_path, stdin=b"hi\n")
                line = one_line(err)
                assert code == 1, line
                assert line.startswith(f"difybot: cannot reach Dify at {base}: {reason}"), line
                assert line.endswith("; check DIFY_API_BASE and that Dify is running")


async def test_a_base_url_without_v1_says_to_add_it(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.origin)
        code, _, err = await run("chat", env=env, cwd=tmp_path, stdin=b"hi\n")
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"difybot: configuration error: DIFY_API_BASE: {dify.origin} is not")
    assert line.endswith(f"the Service API base ends in /v1: try {dify.origin}/v1")


# ---- difybot chat: the exit status tells ------------------------------------------------------


async def test_chat_exits_1_when_dify_is_unreachable(tmp_path: Path) -> None:
    with closed_port() as port:
        env = clean_env(tmp_path, DIFY_API_KEY="app-k", DIFY_API_BASE=f"http://127.0.0.1:{port}/v1",
                        DIFY_APP_MODE="chat", DIFY_MAX_RETRIES="0")  # fmt: skip
        code, out, err = await run("chat", env=env, cwd=tmp_path, stdin=b"hi\n")
    assert code == 1 and out == ""
    assert "connection refused" in one_line(err)


async def test_chat_exits_1_when_a_piped_question_got_no_answer(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        dify.enqueue("/chat-messages", HttpError(500, "internal_server_error", "boom"))
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        code, out, _ = await run("chat", env=env, cwd=tmp_path, stdin=b"first\nsecond\n")
    assert code == 1
    assert out == "Sorry, something went wrong while answering. Please try again.\necho: second\n"


# ---- platform credentials: all or nothing, one rule -------------------------------------


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET"),
        ({"SLACK_APP_TOKEN": "xapp-1"}, "SLACK_BOT_TOKEN"),
        ({"WECHAT_TOKEN": "t0ken1"}, "WECHAT_APP_ID"),
        (
            {"WECOM_CORP_ID": "ww1", "WECOM_TOKEN": "t0ken1"},
            "WECOM_AGENT_ID nor WECOM_SECRET nor WECOM_ENCODING_AES_KEY",
        ),
        ({"WECOM_BOT_TOKEN": "t0ken1"}, "WECOM_BOT_ENCODING_AES_KEY"),
    ],
)
async def test_partial_platform_credentials_are_one_line_for_every_platform(
    tmp_path: Path, given: dict[str, str], missing: str
) -> None:
    env = clean_env(tmp_path, DIFY_API_KEY="app-k", PORT="0", **given)
    code, _, err = await run("serve", env=env, cwd=tmp_path, limit=30)
    assert code == 2
    line = one_line(err)
    assert " is half configured: " in line and f"but not {missing};" in line
    assert all(value not in line for value in given.values())


# ---- the default database follows the user, not the folder ---------------------------------------


async def test_chat_finds_the_same_conversation_from_any_folder(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        del env["DATABASE_URL"]
        for folder in ("one", "two"):
            (tmp_path / folder).mkdir()
            code, out, err = await run("chat", env=env, cwd=tmp_path / folder, stdin=b"hi\n")
            assert code == 0 and out == "echo: hi\n", err
    first, second = (r.json for r in dify.requests_to("/chat-messages"))
    assert "conversation_id" not in first and second["conversation_id"]
    assert "(Continuing the conversation from " in err  # said, on stderr when piped
    assert (tmp_path / "home" / "difybot" / "difybot.db").is_file()
    assert not list((tmp_path / "home" / "difybot").glob("*.migrate-lock"))


# ---- README's quick start, where 8080 and 5001 are taken ----------------------------------------


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```sh\n")[1:]
    return [line for block in blocks for line in block.split("```")[0].splitlines() if line]


async def test_readme_quick_start_works_where_8080_and_5001_are_taken(tmp_path: Path) -> None:
    bin_dir = f"{Path(sys.executable).parent}/"
    serve = readme_commands()[0].split(" && ")[-1]  # after the install, which CI does itself
    chat = next(c for c in readme_commands() if c.startswith(".venv/bin/python -m tests.fakes "))
    with closed_port() as no_dify:  # serve starts without Dify (it retries later)
        env = clean_env(tmp_path, DIFY_API_BASE=f"http://127.0.0.1:{no_dify}/v1",
                        DIFY_MAX_RETRIES="0")  # fmt: skip
        with taken_port(8080), taken_port(5001), taken_port() as other:
            code, _, err = await shell(serve.replace(".venv/bin/", bin_dir), env, tmp_path)
            assert code == 1 and "PORT=8081" in one_line(err)
            # README's one-line change ("PORT=8081 (any free port)"), with a port free here.
            assert "Put `PORT=8081` (any free port) before `.venv/bin/difybot`" in readme()
        changed = serve.replace(".venv/bin/difybot", f"PORT={other} {bin_dir}difybot")
        proc = await asyncio.create_subprocess_shell(
            changed, env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE, start_new_session=True
        )
        try:
            assert proc.stderr is not None
            seen = b""
            while b"serving on 0.0.0.0:%d;" % other not in seen:
                line = await asyncio.wait_for(proc.stderr.readline(), 30)
                assert line, f"serve exited: {seen.decode()}"
                seen += line
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the shell and the difybot it started
            await proc.wait()
        with taken_port(5001):
            code, out, err = await shell(chat.replace(".venv/bin/", bin_dir), env, REPO,
                                         stdin=b"hello from the readme\n")  # fmt: skip
    assert code == 0, err
    assert out.endswith("echo: hello from the readme\n")


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


async def shell(
    command: str, env: dict[str, str], cwd: Path, *, stdin: bytes = b""
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_shell(
        command,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


# ---- the command line itself ---------------------------------------------------------------------


async def test_every_command_describes_itself(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    code, top, _ = await run("--help", env=env, cwd=tmp_path)
    assert code == 0 and "``" not in top and "Put a Dify app into Slack" in top
    for command in (("serve",), ("chat",), ("check",), ("conversations", "list"),
                    ("conversations", "reset"), ("db", "upgrade"), ("db", "current")):  # fmt: skip
        code, out, _ = await run(*command, "--help", env=env, cwd=tmp_path)
        usage, description = out.split("\n\n")[:2]
        assert code == 0 and usage.startswith("usage: difybot")
        assert len(description) > 30 and not description.startswith(("options", "positional"))


async def test_version_answers_without_importing_the_app(tmp_path: Path) -> None:
    probe = (
        "import sys, contextlib\n"
        "from difybot.cli import main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main(['--version'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('difybot', 'bot', 'adapters', 'storage', 'pydantic', 'sqlalchemy', 'rich', 'httpx')))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, env=clean_env(tmp_path), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    version, loaded = out.decode().splitlines()
    assert version.startswith("difybot ")
    assert loaded == "['difybot', 'difybot.cli']", err.decode()


async def test_a_platform_filter_must_name_a_platform(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    code, _, err = await run("conversations", "reset", "--platform", "foo", env=env, cwd=tmp_path)
    assert code == 2 and "invalid choice: 'foo'" in err


async def test_listed_ids_are_never_cut_and_an_empty_database_says_so(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    code, _, err = await run("conversations", "list", env=env, cwd=tmp_path)
    assert code == 2 and "the database has no schema yet" in one_line(err)
    db = Database(create_engine(env["DATABASE_URL"]))
    engine = db.engine
    try:
        await upgrade(engine)
        key = ConversationKey("slack", "T0123456789", Scope.THREAD, "C0123456789:1700000000.000100")
        await ConversationStore(db).set(
            key, "9a1b2c3d-4e5f-6789-abcd-ef0123456789", dify_user="slack:T0123456789:U0123456789"
        )
    finally:
        await db.close()
    code, out, _ = await run("conversations", "list", env=env, cwd=tmp_path)
    assert code == 0
    assert "C0123456789:1700000000.000100" in out and "9a1b2c3d-4e5f-6789-abcd-ef0123456789" in out
