"""Child processes that leave nothing behind: each in its own process group, stopped as a tree.

Used by the stack runner (``fnd up``) to supervise Airflow's components. Standard library only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fnd_core.settings import Settings

STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Component:
    """One supervised process (leader of its own process group) and the log it writes."""

    name: str
    process: subprocess.Popen
    log: Path


def start_in_group(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path
) -> Component:
    """Start ``argv`` in a new session (so a terminal's Ctrl-C reaches us, not it directly)."""
    with log.open("ab") as out:
        out.write(f"\n==== starting {name} at {time.ctime()} ====\n".encode())
        out.flush()
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    return Component(name, process, log)


def stop_components(components: list[Component], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every component's process group, then SIGKILL whatever is left after ``grace_s``.

    Task runners put themselves in process groups of their own, so every descendant is noted
    first and killed too if it outlives the grace period: no orphans.
    """
    tree = {pid for c in components for pid in descendants(c.process.pid)}
    for c in components:
        signal_group(c.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for c in components:
        try:
            c.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(c.process.pid, signal.SIGKILL)
            c.process.wait()
    while tree and time.monotonic() < deadline:
        tree = {pid for pid in tree if alive(pid)}
        time.sleep(0.2)
    for pid in tree:
        signal_group(pid, signal.SIGKILL)
    settle = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously: see them gone
    while tree and time.monotonic() < settle:
        tree = {pid for pid in tree if alive(pid)}
        time.sleep(0.05)


def first_dead(components: list[Component]) -> Component | None:
    """The first component that has exited, if any."""
    return next((c for c in components if c.process.poll() is not None), None)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, to show why a component died."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal ``pid``'s process group when it leads one, else the process alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def stop_postgres(pgdata: Path, timeout_s: float = 30.0) -> bool:
    """Fast-shutdown the PostgreSQL serving ``pgdata``; True if one was running.

    SIGINT to the postmaster named in ``postmaster.pid`` (PostgreSQL's "fast" shutdown). pgserver's
    own cleanup stops a server only when every process that ever took a handle on it exited
    cleanly, which one killed task defeats; the pid file is the ground truth.
    """
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return False
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded PostgreSQL under FND_HOME if it runs; True if one was stopped."""
    return stop_postgres(settings.embedded_pgdata.resolve())


def descendants(root: int) -> set[int]:
    """Every process below ``root`` now (from ``ps``: works on Linux and macOS)."""
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        pid, ppid = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
