"""Runs one load scenario: the fakes process, a real ``difybot serve`` process, and their figures.

The fakes (``benchmarks.load_fakes``) and difybot are separate processes, so difybot's CPU time
and peak RSS (``VmHWM``) are its own; both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
LAST_LOG = Path(tempfile.gettempdir()) / "difybot-bench-last.log"
TOKENS = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_APP_TOKEN": "xapp-test-token"}


def difybot_command() -> list[str]:
    """``difybot serve`` from this virtual environment (or the module, from a bare tree);
    ``DIFYBOT_BENCH_COMMAND`` replaces it (e.g. to try a variant of difybot)."""
    if override := os.environ.get("DIFYBOT_BENCH_COMMAND"):
        return override.split()
    script = Path(sys.executable).with_name("difybot")
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("difybot")
    return [found, "serve"] if found else [sys.executable, "-m", "difybot.cli", "serve"]


def difybot_env(urls: dict[str, str], folder: Path, settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DIFY_", "WE"))}
    env.update(TOKENS)
    env.update(
        DIFY_API_BASE=urls["dify"],
        DIFY_API_KEY=urls["key"],
        SLACK_API_URL=urls["slack"],
        DATABASE_URL=f"sqlite+aiosqlite:///{folder}/difybot.db",
        HOST="127.0.0.1",
        PORT="0",
    )
    env.update(settings)
    return env


def _read_event(stream: IO[str], process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        process.wait(timeout=5)
        raise SystemExit(f"the fakes process ended before {what} (exit {process.returncode})")
    event: dict[str, Any] = json.loads(line)
    return event


def run_scenario(
    spec: dict[str, Any], settings: dict[str, str], *, profile: Path | None = None
) -> dict[str, Any]:
    """The fakes' result plus difybot's CPU seconds (during the load) and peak RSS.

    ``profile``: run difybot under ``py-spy record`` and write its folded stacks there (the
    figures are then those of a sampled process, so only the profile is worth reading).
    """
    with tempfile.TemporaryDirectory(prefix="difybot-bench-") as tmp:
        folder = Path(tmp)
        fakes = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load_fakes", json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(0),
        )
        log = (folder / "difybot.log").open("w")
        bot: subprocess.Popen[str] | None = None
        try:
            assert fakes.stdout is not None
            urls = _read_event(fakes.stdout, fakes, "listening")
            env = difybot_env(urls, folder, settings)
            bot = subprocess.Popen(
                difybot_command(), cwd=folder, env=env, stderr=log, text=True, preexec_fn=pinned(1)
            )
            process = psutil.Process(bot.pid)
            _read_event(fakes.stdout, fakes, "difybot connected")
            spy = _spy(bot.pid, profile) if profile else None
            cpu_start, wall_start = _cpu(process), time.perf_counter()
            result = _read_event(fakes.stdout, fakes, "the result")
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(timeout=60)
            result["cpu"] = _cpu(process) - cpu_start
            result["wall"] = time.perf_counter() - wall_start
            result["peak_rss_mb"] = _peak_rss_kb(process.pid) / 1024
            _stop(bot)  # before the fakes go: difybot would log their vanishing as an error
            result["errors"] = _count_errors(folder / "difybot.log", log)
            return result
        finally:
            _stop(bot)
            if fakes.stdin is not None:
                fakes.stdin.close()  # the fakes' cue to exit
            _stop(fakes)
            _keep_log(folder / "difybot.log", log)


def pinned(cpu: int) -> Callable[[], None] | None:
    """Run a process on one CPU (the ``cpu``-th this process may use), for ``preexec_fn``.

    The fakes and the process measured go on separate CPUs, always: sharing one they take turns,
    every read carries one frame, and the same client measured 85k or 153k events/CPU-s
    depending on where the OS put it; and a busy fake would add its own delays to difybot's."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    chosen = sorted(os.sched_getaffinity(0))[cpu]
    return lambda: os.sched_setaffinity(0, {chosen})


def _spy(pid: int, profile: Path) -> subprocess.Popen[str]:
    """py-spy sampling difybot during the load only (folded stacks, 100 Hz)."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-r", "100", "-f", "raw", "-o", str(profile), "-p", str(pid)]
    quiet = subprocess.DEVNULL
    return subprocess.Popen(command, stdout=quiet, stderr=quiet, text=True)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _count_errors(path: Path, log: IO[str]) -> int:
    """ERROR records difybot logged (a failed answer logs one); the log stays in a temp dir."""
    log.flush()
    return sum(" ERROR " in line for line in path.read_text(errors="replace").splitlines())


def _keep_log(path: Path, log: IO[str]) -> None:
    """The last run's difybot log, for reading after a surprise."""
    log.close()
    shutil.copy(path, LAST_LOG)


def _stop(process: subprocess.Popen[str] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
