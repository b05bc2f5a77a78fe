"""Who used the CPU during a benchmark's burst: per process and per thread from
``/proc/<pid>/stat``, the whole machine from ``/proc/stat`` (on a shared machine the
difference is other work), shared by bench/pop_latency.py and bench/cluster.py."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = [
    "CpuWatch", "asterisk_pid", "machine_cpu_s", "pid_of", "proc_cpu_s", "runqueue_wait_s",
    "threads_cpu_s",
]  # fmt: skip


def proc_cpu_s(pid: int) -> float:
    """utime + stime (s) of one process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_s(pid: int) -> dict[str, float]:
    """utime + stime (s) of each thread of a process by name; the main thread (the
    daemon's event loop) is ``main``."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                stat = (task / "stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                comm = stat[stat.find("(") + 1 : stat.rfind(")")]
                name = "main" if task.name == str(pid) else comm
                sec = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                out[name] = out.get(name, 0.0) + sec
    return out


def runqueue_wait_s(pid: int) -> float:
    """How long the process's main thread (the daemon's event loop) has waited, runnable,
    for a CPU (``/proc/<pid>/task/<pid>/schedstat``, second field, ns): time it wanted to
    run and the kernel ran something else."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def asterisk_pid(inst: object) -> int | None:
    """The Asterisk process itself: the child of the ``unshare`` the runner started."""
    proc = getattr(inst, "_proc", None)
    if proc is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == "asterisk":
                return int(child)
    return None


def machine_cpu_s() -> float:
    """CPU time used by the whole machine so far (every CPU, user + system + irq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # not idle/iowait
    return busy / os.sysconf("SC_CLK_TCK")


def pid_of(comm: str) -> int | None:
    """A process by its name (``comm``), e.g. the machine's ``nats-server``: read, never
    signalled."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    return int(entry.name)
    return None


class CpuWatch:
    """CPU seconds of named processes (and of the machine) from :meth:`start` to
    :meth:`stop`; a process gone by then reads ``nan``."""

    def __init__(self, parts: dict[str, int | None]) -> None:
        self.parts = {name: pid for name, pid in parts.items() if pid is not None}
        self._at0: dict[str, float] = {}
        self._machine0 = 0.0

    def start(self) -> None:
        self._at0 = {name: proc_cpu_s(pid) for name, pid in self.parts.items()}
        self._machine0 = machine_cpu_s()

    def stop(self) -> tuple[dict[str, float], float]:
        """(CPU seconds by part, CPU seconds of the whole machine) since :meth:`start`."""
        used = {name: proc_cpu_s(pid) - self._at0[name] for name, pid in self.parts.items()}
        return used, machine_cpu_s() - self._machine0
