"""Whether a process is still there: region workers watch the sync that started them; the
cleanup sensor checks the process behind a cancel run that still says STARTED; a sync
removes the spool directories of syncs that are gone."""

from __future__ import annotations

import os
import socket


def gone(pid: int, started: str | None = None) -> bool:
    """True when no process has this PID, it is a zombie (killed, not yet reaped), or, given
    its start time (`start_time`), the PID now belongs to another process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    fields = stat_fields(pid)
    if fields is None:
        return False
    return fields[0] == "Z" or (started is not None and fields[19] != started)


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    fields = stat_fields(pid)
    return fields[19] if fields else None


def this_process() -> dict[str, str]:
    """Host, PID and start time of the running process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": str(pid), "started": start_time(pid) or ""}


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state first, then the parent's PID; None
    once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None
