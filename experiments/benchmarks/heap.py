"""This process's glibc heap, as the training benchmark needs it: trimming off, memory given
back, and the peak resident memory to report.

XLA:CPU allocates a training step's temporaries as one block of gigabytes. With glibc's
trimming on, that block returns to the OS after every step and is page-faulted in again on the
next, which the benchmark would time as step time (docs/benchmarks.md, "Training step"). Unlike
the settings `configure_malloc` makes before JAX starts its threads, these can be changed at
any time, so they are applied around the measurement. Plain Python and ctypes: no JAX.
"""

from __future__ import annotations

from collections.abc import Sequence

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter (malloc.h)


def disable_trim() -> bool:
    """Stop glibc from returning the top of the heap to the OS (mallopt(M_TRIM_THRESHOLD, -1)).

    `configure_malloc('reuse')` trims above 1 GiB, but XLA:CPU allocates a training step's
    temporaries as one block (2.9 GB for Hawk at the fixed shape). Freed at the end of the
    step, that block is the top of the heap and is trimmed, so every step page-faults all of it
    in again (about 730K faults). Unlike the arena count, this can be changed at any time."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(_M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False


def _mem_available() -> int | None:
    """MemAvailable from /proc/meminfo, bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def room_for_no_trim(temp_bytes: Sequence[int]) -> str | None:
    """None if there is memory to stop trimming, else the reason not to. With trimming off the
    heap keeps its high-water mark, and several models interleaved in one process fragment it:
    at the fixed shape the three families' temporaries (about 3 GB each) grew it to 9 GB. So
    ask for their sum twice over, plus 2 GiB, to be available now."""
    available = _mem_available()
    need = 2 * sum(temp_bytes) + (2 << 30)
    if available is not None and available < need:
        return f"{available / 2**30:.1f} GiB available, {need / 2**30:.1f} GiB wanted"
    return None


def release_free_memory() -> bool:
    """Return the heap's free memory to the OS now (glibc malloc_trim), whatever the threshold."""
    import ctypes
    import ctypes.util
    import gc
    import platform

    gc.collect()
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def max_rss_mib() -> float:
    """This process's peak resident memory so far, MiB: VmHWM of /proc/self/status. Not
    getrusage's ru_maxrss, which Linux carries over from the parent through fork and exec (a
    child of a big process would report the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
