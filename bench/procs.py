"""The engine process of a bench run: its stdout lines stamped with wall time, and the CPU and peak RSS of
its whole process tree read from /proc."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench import ROOT

TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- /proc


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _cpu_and_hwm(pid: int) -> tuple[float, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        hwm = 0.0
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
                    break
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, hwm


class TreeSampler(threading.Thread):
    """Samples utime+stime and VmHWM of a process and all its descendants every `interval` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.cpu: dict[int, float] = {}
        self.hwm: dict[int, float] = {}
        self.series: list[tuple[float, float]] = []  # (wall time, CPU s of the tree so far)
        self.done = threading.Event()

    def sample(self) -> None:
        tree, pids, stack = _children(), [], [self.root]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(tree.get(pid, []))
        for pid in pids:
            got = _cpu_and_hwm(pid)
            if got is not None:
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), got[0])
                self.hwm[pid] = max(self.hwm.get(pid, 0.0), got[1])
        self.series.append((time.time(), sum(self.cpu.values())))

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    @property
    def peak_rss_mb(self) -> float:
        return sum(self.hwm.values())


# --------------------------------------------------------------------------------------------- child


class Child:
    """An engine process: its stdout lines stamped with wall time, its process tree sampled."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.started = time.time()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=ROOT,
        )
        self.lines: list[tuple[float, str]] = []
        self.sampler = TreeSampler(self.proc.pid)
        self.sampler.start()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.cpu_rusage = 0.0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.time(), raw.decode(errors="replace").rstrip("\n")))
            self.log.write(raw)

    def send(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for t, line in list(self.lines):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append((t, orjson.loads(line)))
        return out

    def first_record_at(self, pass_no: int) -> float:
        for t, ev in self.events():
            if ev.get("event") == "first_record" and int(ev.get("pass", 0)) == pass_no:
                return float(ev.get("at", t))
            if ev.get("event") == "caught_up" or "active_s" in ev:  # streamsvc, raw consume
                return float(ev.get("first_at", t - float(ev["active_s"])))
        return math.nan

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = 60.0) -> int:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        deadline = time.time() + timeout
        while self.alive() and time.time() < deadline:
            time.sleep(0.1)
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        _, status, usage = os.wait4(self.proc.pid, 0) if self.proc.returncode is None else (0, 0, None)
        if usage is not None:
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_rusage = usage.ru_utime + usage.ru_stime
        self.sampler.done.set()
        self.sampler.join()
        self.sampler.sample()
        self.reader.join(5)
        self.log.close()
        return self.proc.returncode or 0
