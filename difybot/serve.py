"""``difybot serve``: bind the port, build everything, run until SIGTERM/SIGINT, close in order."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.errors import AddressInUse, ConfigError
from bot.ops.pace import settle_startup_objects
from difybot.config import CoreSettings
from difybot.wiring import Core, build_core, build_platforms, build_web

log = logging.getLogger(__name__)


async def serve(settings: CoreSettings, *, ready: Callable[[int], Any] | None = None) -> None:
    """``difybot serve``: run until SIGTERM/SIGINT, then finish in-flight answers and exit.

    The listening address is taken first, so a port in use fails at once, before the database
    or Dify is touched; whatever a failed start opened is closed again, in reverse order."""
    listeners = bind(settings.host, settings.port)
    async with contextlib.AsyncExitStack() as opened:
        for listener in listeners:
            opened.callback(listener.close)
        core = await build_core(settings, replica=True)
        opened.push_async_callback(core.close)
        app = build_web(core)
        runner = web.AppRunner(app, access_log=None)
        opened.push_async_callback(_close_front, core, runner)
        build_platforms(core, app)
        await runner.setup()
        for listener in listeners:
            await web.SockSite(runner, listener).start()
        for adapter in core.adapters:
            await adapter.start()
        core.inbox.start()  # finish messages left by replicas that died (or by our last run)
        settle_startup_objects()
        await _serve_until_stopped(core, port=listeners[0].getsockname()[1], ready=ready)


async def _serve_until_stopped(
    core: Core, *, port: int, ready: Callable[[int], Any] | None
) -> None:
    settings = core.settings
    names = ", ".join(a.name for a in core.adapters) or "none (set platform credentials)"
    log.info("difybot serving on %s:%d; adapters on: %s; replica %s",
             settings.host, port, names, core.inbox.replica)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(port)
    try:
        await stop.wait()
        log.info("shutting down: finishing %d answer(s)", core.inbox.in_flight)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _close_front(core: Core, runner: web.AppRunner) -> None:
    """Stop taking messages: the adapters, then the HTTP listener (the core closes after)."""
    for adapter in core.adapters:
        await adapter.stop()
    if runner.server is not None:
        await runner.cleanup()


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for HOST:PORT (one per address HOST resolves to, as asyncio would
    open them), or the error that names the setting to change."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"HOST: cannot listen on {host!r}: {exc.strerror}") from None
    listeners: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((family, addr[0]) for family, *_, addr in found):
            listeners.append(socket.create_server((address, port), family=family))
            port = listeners[0].getsockname()[1]  # PORT=0: the same free port on every address
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise _to_bind_error(exc, host, port) from None
    return listeners


def _to_bind_error(exc: OSError, host: str, port: int) -> AddressInUse | ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(
            f"port {port} on {host} is already in use by another program; set PORT to a free "
            f"port (e.g. PORT={port + 1 if port < 65535 else 8080}) or stop the other program"
        )
    if exc.errno == errno.EACCES:
        return AddressInUse(
            f"not allowed to listen on port {port} (ports below 1024 need privileges); "
            "set PORT to 1024 or above"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"HOST: {host} is not an address of this machine")
    return AddressInUse(f"cannot listen on {host}:{port}: {exc.strerror}")
