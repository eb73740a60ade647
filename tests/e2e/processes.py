"""The process tree of a `rekisteri up` run, as the end-to-end tests inspect it (Linux ps/proc)."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO


def process_table() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process, from /proc (ps would cut long lines)."""
    rows = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            args = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        rows.append((int(stat.parent.name), ppid, args))
    return rows


def descendants(pid: int) -> list[int]:
    rows = process_table()
    found, frontier = [], {pid}
    while frontier:
        children = [child for child, parent, _ in rows if parent in frontier]
        found += children
        frontier = set(children)
    return found


def child_running(parent: int, marker: str) -> int | None:
    """The pid of `parent`'s direct child whose command line contains `marker`."""
    for pid, ppid, args in process_table():
        if ppid == parent and marker in args and not _zombie(pid):
            return pid
    return None


def _zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def alive(pids: list[int]) -> list[int]:
    running = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        if not _zombie(pid):
            running.append(pid)
    return running


class OutputReader:
    """Collects a child's output lines on a thread, so its pipe never fills while a test waits."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)
