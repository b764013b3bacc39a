"""A live `python -m service` on 127.0.0.1 for the overload and soak runs, with its RSS from /proc."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status (Linux) as a dict: `VmRSS`, `Threads`, ..."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        status[name] = value.strip()
    return status


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    return int(proc_status(pid)["VmRSS"].split()[0]) * 1024


class LiveServer:
    """`python -m service` with one worker on a free 127.0.0.1 port; `FORECAST_*` from `env`.

    One worker, so the process started is the one that serves and its RSS is the server's.
    Stopped with SIGTERM (graceful), killed if it has not exited 40 s later.
    """

    def __init__(self, env: dict[str, str], log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FORECAST_HOST": "127.0.0.1",
            "FORECAST_PORT": str(self.port),
            "FORECAST_WORKERS": "1",
            "FORECAST_DEVICE": "cpu",
            "FORECAST_LOG_LEVEL": "warning",  # no access log: it would cost the server CPU
            **env,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: BinaryIO | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def threads(self) -> int:
        return int(proc_status(self.pid)["Threads"])

    def __enter__(self) -> "LiveServer":
        self._log_file = open(self.log, "wb") if self.log else None
        out = self._log_file or subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=self.env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the service was not ready on {self.url} within 60 s")
            time.sleep(0.2)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
