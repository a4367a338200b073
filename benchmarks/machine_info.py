"""The machine a benchmark ran on, as every benchmark prints it and writes it to JSON."""

from __future__ import annotations

import os
import platform


def machine() -> dict[str, object]:
    """CPU model, cores usable by this process, memory, Python and platform."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (FileNotFoundError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def machine_line() -> str:
    """One line: CPU, usable cores, memory, Python."""
    info = machine()
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
            f"Python {info['python']}")  # fmt: skip
