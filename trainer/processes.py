"""What the kernel says about a sandbox's processes and files: the process table, a session's members,
killing them all, and the bytes written under a set of paths (Linux /proc; empty elsewhere)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import namedtuple
from pathlib import Path

Proc = namedtuple("Proc", "pid ppid sid resident_kb threads zombie")


def scan() -> dict[int, Proc]:
    """Every process of the machine as this process's /proc shows it (empty where there is no /proc)."""
    table, page_kb = {}, os.sysconf("SC_PAGE_SIZE") // 1024
    for name in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # fields[1] is the parent, [3] the session id, [17] the thread count, [21] resident pages.
            table[int(name)] = Proc(int(name), int(fields[1]), int(fields[3]), int(fields[21]) * page_kb,
                                     int(fields[17]), fields[0] == "Z")
        except (OSError, IndexError, ValueError):
            continue
    return table


def session_processes(sid: int) -> list[tuple[int, int]]:
    """(pid, resident kB) of every live process in session `sid` (Linux /proc; empty elsewhere)."""
    return [(p.pid, p.resident_kb) for p in scan().values() if p.sid == sid and not p.zombie]


def sandbox_processes(leader: int) -> list[Proc]:
    """The live processes of the sandbox led by `leader`: its session, and its descendants, which a
    process that called setsid() still is (in the jail, orphans are adopted by the namespace's init)."""
    table = scan()
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    descendants, stack = {leader}, [leader]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in descendants:
                descendants.add(child)
                stack.append(child)
    members = descendants | {p.pid for p in table.values() if p.sid == leader}
    return [table[pid] for pid in members if pid in table and not table[pid].zombie]


def kill_session(sid: int) -> None:
    # The process group, then anything that left it (or the session) too.
    for kill, pid in [(os.killpg, sid), *((os.kill, p.pid) for p in sandbox_processes(sid))]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether our child `pid` is still running, without reaping it: while it is a zombie its pid (the
    session's id) cannot be reused, so killing by that id never hits a stranger."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def disk_usage(paths: list[Path]) -> int:
    """Bytes allocated under `paths`, each file or directory counted once and at least 4 kB (its inode):
    sparse files cost what they use, and a flood of empty files still counts."""
    seen, total, stack = set(), 0, [str(p) for p in paths]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += max(info.st_blocks * 512, 4096)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total
