"""What every benchmark script shares: the best wall time of repeated calls."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def best_of(repeat: int, func: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    """The best wall time, in seconds, of ``repeat`` calls of ``func`` (``setup`` before each, untimed)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def stat_each(paths: list[str]) -> None:
    """One ``os.stat`` of each path, missing ones included: the floor of a search through repositories."""
    for path in paths:
        try:
            os.stat(path)
        except FileNotFoundError:
            pass
