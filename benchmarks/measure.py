"""Timing (medians and IQR of repeats) and peak memory.

Peak memory
-----------
* CUDA: ``torch.cuda.max_memory_allocated()`` minus the allocation at the start of the call
  (after ``reset_peak_memory_stats``): bytes held by tensors, caching-allocator slack excluded.
* CPU: the process's peak resident set size during the call minus the value at its start: the
  kernel's high-water mark (VmHWM, reset through ``/proc/self/clear_refs`` before the call; exact)
  where Linux allows it, and always also the RSS (``/proc/self/statm``) sampled every 0.5 ms by a
  background thread. Before the call ``malloc_trim`` returns freed heap pages to the system, so
  that reused heap is counted again. glibc is told
  (``mallopt``) to serve every allocation of ≥ 1 MiB by ``mmap`` and to trim freed memory,
  so that freed tensors leave the RSS and later calls' peaks are not hidden by recycled heap.
  Without the high-water mark, samples can miss a spike shorter than the sampling period (a
  downward bias; under heavy load the sampling thread runs rarely).
"""

from __future__ import annotations

import ctypes
import os
import statistics
import threading
import time

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tune_malloc() -> bool:
    """M_MMAP_THRESHOLD = M_TRIM_THRESHOLD = 1 MiB (glibc only); True when applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok1 = libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
        ok2 = libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD
        return bool(ok1 and ok2)
    except OSError:
        return False


def malloc_for_timing() -> bool:
    """Undo :func:`tune_malloc` for timed runs: M_MMAP_THRESHOLD = 32 MiB (glibc's largest) and
    M_TRIM_THRESHOLD = 1 GiB, so that freed tensors are reused from the heap instead of being
    unmapped and page-faulted in again on every allocation (with the 1 MiB thresholds of the
    memory runs, page faults took about a third of a λ_max run's CPU time at n = 512)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok1 = libc.mallopt(-3, 32 << 20)
        ok2 = libc.mallopt(-1, 1 << 30)
        return bool(ok1 and ok2)
    except OSError:
        return False


def malloc_for_memory() -> bool:
    """Back to :func:`tune_malloc`'s thresholds and return the freed heap to the system
    (``malloc_trim``), so that the next RSS deltas count new memory."""
    ok = tune_malloc()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return ok


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux ≥ 4.0:
    ``/proc/self/clear_refs`` ← 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _peak_rss_bytes() > 0
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:  # not Linux: ru_maxrss is a high-water mark, no delta possible
        return 0


class PeakMemory:
    """Context manager; ``.peak`` = peak bytes above the start of the block on ``device``."""

    def __init__(self, device: torch.device, interval: float = 5e-4):
        self.device = torch.device(device)
        self.interval = interval
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()  # freed heap pages left resident would hide this block's allocations
        self._hwm = _reset_peak_rss()
        self._start = rss_bytes()
        self._max = self._start
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                r = rss_bytes()
                if r > self._max:
                    self._max = r
                time.sleep(self.interval)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device) - self._start)
            return False
        self._max = max(self._max, rss_bytes())
        self._stop.set()
        self._thread.join()
        if self._hwm:  # the kernel's exact high-water mark since the reset (no sampling gaps)
            self._max = max(self._max, _peak_rss_bytes())
        self.peak = int(max(0, self._max - self._start))
        return False


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


_LAST_CPU = [0.0]


def timed(fn, device):
    """(result, wall seconds) of ``fn()``, device-synchronised on both ends; the process CPU
    seconds of the same call are kept for :func:`last_cpu_seconds`."""
    sync(device)
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    t1 = time.perf_counter()
    _LAST_CPU[0] = time.process_time() - c0
    return out, t1 - t0


def last_cpu_seconds() -> float:
    """Process CPU seconds (user + system, all threads) of the last :func:`timed` call: on a
    shared machine the wall clock includes time the process waited for a core; this does not."""
    return _LAST_CPU[0]


def summary(xs) -> dict:
    """Median, quartiles (inclusive method) and IQR of a list of numbers."""
    xs = [float(x) for x in xs]
    if not xs:
        return {"median": None, "q1": None, "q3": None, "iqr": None, "n": 0, "samples": []}
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "iqr": q3 - q1, "n": len(xs), "samples": xs}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
