"""What every benchmark script shares: the best wall time of repeated calls, alone or interleaved."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable


def best_of(repeat: int, func: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    """The best wall time, in seconds, of ``repeat`` calls of ``func`` (``setup`` before each, untimed)."""
    return best_interleaved(repeat, func, setup=setup)[0]


def best_interleaved(repeat: int, *funcs: Callable[[], object],
                     setup: Callable[[], object] | None = None) -> list[float]:
    """The best wall time, in seconds, of each function over ``repeat`` rounds that call each once in turn.

    A figure and its floor timed in the same rounds see the same load on a shared
    machine, so their ratio is steadier than that of two separate runs.
    """
    best = [float("inf")] * len(funcs)
    for _ in range(repeat):
        for index, func in enumerate(funcs):
            if setup is not None:
                setup()
            start = time.perf_counter()
            func()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def best_in_slices(repeat: int, slices: int, *funcs: Callable[[int], object]) -> list[float]:
    """As `best_interleaved`, with each function's work cut into ``slices`` short calls ``func(i)``.

    Each figure is the sum over the slices of that slice's best time. On a
    machine whose cores are shared by more busy processes than it has, a
    process is preempted every few milliseconds, so a window of tens of
    milliseconds is never timed clean; a slice of about a millisecond mostly is.
    """
    totals = [0.0] * len(funcs)
    for index in range(slices):
        bests = best_interleaved(repeat, *(functools.partial(func, index) for func in funcs))
        totals = [total + best for total, best in zip(totals, bests, strict=True)]
    return totals


def stat_each(paths: list[str]) -> None:
    """One ``os.stat`` of each path, missing ones included: the floor of a search through repositories."""
    for path in paths:
        try:
            os.stat(path)
        except FileNotFoundError:
            pass


def report_ms(name: str, measured: float, floor: float, target: float, detail: str = "", width: int = 14) -> None:
    """Print one figure in milliseconds, its floor, their ratio and the verdict against ``target``."""
    ratio = measured / floor
    verdict = "ok" if ratio <= target else f"OVER target {target}x"
    print(f"{name:<{width}} butler {measured * 1e3:8.3f} ms  floor {floor * 1e3:8.3f} ms  ratio {ratio:5.2f}x "
          f"(target <= {target}x) {verdict} {detail}", flush=True)
