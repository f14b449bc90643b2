"""A bot replica as a real process: ``python -m bot.cli run --platform slack --port P`` with its settings in the
environment, the way a container runs it. Used by tests/test_replicas.py and tests/bench/load.py.

CPU time and peak memory are read from /proc (Linux), so the figures are the replica's own and nothing in the
replica has to cooperate.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.redis_server import free_port

START_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.05


def isolated_redis_url(url: str, db: int) -> str:
    """The same server, another logical database: the bot's keys (prefix "sb:") never meet another test's."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


class Replica:
    def __init__(self, *, env: dict[str, str], log_path: Path, name: str) -> None:
        self.name = name
        self.port = free_port()
        self._env = {**os.environ, **env}
        self._log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self) -> Replica:
        with open(self._log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "run", "--platform", "slack", "--port", str(self.port), "--host", "127.0.0.1"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def ready(self) -> None:
        """Until /healthz answers (imports and auth.test done); fails with the replica's log if it died."""
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"replica {self.name} exited {self.proc.returncode}:\n{self.log()}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {self.name} not ready after {START_TIMEOUT_S}s:\n{self.log()}")
                await asyncio.sleep(0.1)

    async def busy(self) -> int:
        """Pieces of background work in flight (the adapter's /healthz says)."""
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                return int((await resp.json())["busy"])

    def kill(self) -> None:
        """kill -9: no cleanup, no done(), heartbeats just stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, *, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (the graceful path); kill if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    async def terminated(self, *, within_s: float = 30.0) -> int | None:
        """SIGTERM, then wait for the exit without blocking the event loop (the fakes may live in it); the exit
        code, or None if it is still running after ``within_s``."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        for _ in range(int(within_s / POLL_S)):  # a Popen's exit has no awaitable: poll it
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(POLL_S)
        return self.proc.poll()

    def cpu_seconds(self) -> float:
        """User + system CPU of the replica so far (utime and stime, fields 14 and 15 of /proc/PID/stat)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        """VmHWM: the resident set's high-water mark."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
