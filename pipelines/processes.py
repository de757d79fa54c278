"""Whether a process is still there: region workers watch the sync that started them, the
cleanup sensor checks the `policy enforce` process behind a run that still says STARTED."""

from __future__ import annotations

import os


def gone(pid: int) -> bool:
    """True when no process has this PID, or it is a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False
