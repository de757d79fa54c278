"""Processes below a given one, read from /proc (Linux): the benchmarks' memory figure and
the kill test both need a sync's forkserver and region workers, which are not its direct
children."""

from __future__ import annotations

from pathlib import Path

from pipelines.processes import stat_fields


def descendants(root: int) -> list[int]:
    """Every live process whose chain of parents reaches `root`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found += frontier
    return found


def vm_hwm_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), 0 once it is gone."""
    return _field_mb(Path(f"/proc/{pid}/status"), "VmHWM:")


def pss_mb(pid: int) -> float:
    """A process's proportional share of resident memory now (Pss): pages it shares with
    other processes (a forkserver's children) count once across them, so a sum over
    processes is their memory together. 0 once it is gone."""
    return _field_mb(Path(f"/proc/{pid}/smaps_rollup"), "Pss:")


def _field_mb(path: Path, field: str) -> float:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
