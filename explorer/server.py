"""Start, health-check and stop ``streamlit run app.py`` on a free loopback port.

Shared by the real-browser test and the load benchmark; it starts the app in a subprocess
(headless, no usage statistics, the project's ``.streamlit`` config) and never imports
Streamlit itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    """A running ``streamlit run app.py``: its process, base URL and log file."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    health_s: float = 0.0

    def tracebacks(self) -> str:
        """The log's text when it holds a traceback, else an empty string."""
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return text if "Traceback" in text else ""


def start(home: str | Path, *, env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str, Path]:
    """``streamlit run app.py`` on 127.0.0.1:<free port>; its log goes to
    ``home/streamlit.log``. Returns the process, the base URL and the log path."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log_path


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> float:
    """Seconds until ``/_stcore/health`` answers ``ok``."""
    begin = time.perf_counter()
    while time.perf_counter() - begin < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return time.perf_counter() - begin
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server (kill it after 15 s)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@contextmanager
def running(home: str | Path, *, env: Mapping[str, str] | None = None,
            timeout: float = 90) -> Iterator[AppServer]:
    """A healthy app server for the ``with`` block, stopped after it."""
    proc, url, log_path = start(home, env=env)
    try:
        server = AppServer(proc, url, log_path)
        server.health_s = wait_healthy(url, proc, timeout)
        yield server
    finally:
        stop(proc)
