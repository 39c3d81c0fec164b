"""What the app's load test measures besides the sessions themselves: the server's memory
sampled while they run (:class:`MemorySampler`), quantiles and summaries of the timings,
the server log's tracebacks and the browser's version (used by ``load_app.py``)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.5

class MemorySampler(threading.Thread):
    """RSS of the server (with its child processes) and of this script's other descendants
    (the Playwright driver and chromium), every ``SAMPLE_SECONDS``."""

    def __init__(self, server_pid: int):
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self._psutil = psutil
        self.server = psutil.Process(server_pid)
        self.me = psutil.Process()
        self.samples: list[tuple[float, float, float]] = []  # (t, server MiB, browser MiB)
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, tuple[float, float]] = {}
        self._stop_event = threading.Event()
        self._t0 = time.perf_counter()

    @staticmethod
    def _rss(procs) -> int:
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a process may end between listing and reading
                pass
        return total

    @staticmethod
    def _cpu(procs) -> float:
        total = 0.0
        for p in procs:
            try:
                times = p.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except Exception:  # noqa: BLE001
                pass
        return total

    def _trees(self) -> tuple[list, list]:
        ps = self._psutil
        try:
            server = [self.server, *self.server.children(recursive=True)]
        except ps.Error:
            server = []
        server_pids = {p.pid for p in server}
        try:
            client = [p for p in self.me.children(recursive=True) if p.pid not in server_pids]
        except ps.Error:
            client = []
        return server, client

    def sample(self) -> tuple[float, float]:
        server, client = self._trees()
        s, c = self._rss(server) / 2**20, self._rss(client) / 2**20
        self.samples.append((time.perf_counter() - self._t0, s, c))
        return s, c

    def mark(self, name: str) -> None:
        """Name this moment; also records the CPU seconds used so far by the server and by
        the browser (processes alive now)."""
        self.marks[name] = time.perf_counter() - self._t0
        server, client = self._trees()
        self.cpu[name] = (self._cpu(server), self._cpu(client))

    def cpu_between(self, start: str, end: str) -> tuple[float, float]:
        (s0, c0), (s1, c1) = self.cpu[start], self.cpu[end]
        return s1 - s0, c1 - c0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample()

    def peak(self, start: str | None = None, end: str | None = None, *, column: int = 1) -> float:
        lo = self.marks.get(start, 0.0) if start else 0.0
        hi = self.marks.get(end, float("inf")) if end else float("inf")
        values = [s[column] for s in self.samples if lo <= s[0] <= hi]
        return max(values) if values else float("nan")

    def timeline(self, every: float = 2.0) -> list[list[float]]:
        out, last = [], -every
        for t, s, c in self.samples:
            if t - last >= every:
                out.append([round(t, 1), round(s, 1), round(c, 1)])
                last = t
        return out


# ----------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------
def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict:
    r = lambda v: None if v is None else round(v, 2)  # noqa: E731
    return {"n": len(values), "median": r(quantile(values, 0.5)), "p95": r(quantile(values, 0.95)),
            "max": r(max(values) if values else None), "min": r(min(values) if values else None)}


def _fmt(v: float | None, unit: str = "s") -> str:
    return "-" if v is None else f"{v:.2f} {unit}"


def server_tracebacks(log_path: Path) -> tuple[int, str]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    count = text.count("Traceback (most recent call last)")
    return count, (text[text.find("Traceback"):][:3000] if count else "")


def chromium_version(chromium: str) -> str:
    try:
        out = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
