"""Run a function over many data references on any `concurrent.futures.Executor`.

`map` sends the data references to the executor in chunks. Each chunk is
pickled once in this process (the Butler behind its references with it, so a
Butler travels once per chunk, not once per reference) and unpickled in the
worker, which rebuilds the Butler from its arguments (`Butler.__reduce__`) and
so opens its own repositories, registries and connections: nothing open is
inherited from this process, whatever the executor (a process pool started
with ``spawn``, threads, or a Dask cluster through
``distributed.Client.get_executor()``).

Every reference gets a `MapResult`: its data ID and the function's value, or
the error it raised (type, message and traceback text), or that it was skipped
as already done. A failure of one reference never stops the others; a chunk
whose worker died (a process pool broken by a killed process, a Dask worker
lost) reports each of its references as failed, never drops them. A killed
process breaks a whole ``ProcessPoolExecutor``, so every chunk it had not
returned yet is reported so; some of their references may have been done.
Dask retries a task whose worker died, up to its ``allowed-failures``, before
giving it up (``KilledWorker``).

A function that writes its outputs and then fails is "done" for a rerun, as
in Gen2: write last.

What "done" means for ``skipExisting``: the function declares the dataset types
it writes (``outputs=[...]``, or an ``outputs`` attribute on the function), and
a reference is done when every one of them exists for its data ID in the
Butler's output repositories (``dataRef.datasetExists(type, write=True)``), as
Gen2's ``CmdLineTask --skip-existing`` decided from a task's outputs. A rerun
with ``skipExisting=True`` therefore does only the references some output of
which is missing, such as those of the chunks a killed worker lost.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from .errors import MapArgumentError, describe_data_id

__all__ = ["map", "MapResult", "TaskError", "summary", "failures"]

_log = logging.getLogger(__name__)

#: chunks per worker that `map` aims for when no chunk size is given: few enough to amortise
#: the Butler each chunk rebuilds, enough to balance uneven work and to lose little to a dead worker
CHUNKS_PER_WORKER = 4


@attrs.frozen
class TaskError:
    """Why a function failed for one data reference, in plain text (an exception may not pickle).

    Attributes
    ----------
    type : `str`
        The exception's class, qualified (``"builtins.ValueError"``).
    message : `str`
        The exception's message.
    traceback : `str`
        The formatted traceback, as the worker saw it.
    """

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, note: str = "") -> TaskError:
        """The error of an exception (``note`` appended to its message)."""
        kind = type(exc)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
        return cls(name, (str(exc) or kind.__name__) + note, text)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@attrs.frozen
class MapResult:
    """What `map` did with one data reference.

    Attributes
    ----------
    dataId : `dict` or `None`
        The reference's data ID (None for an object without one).
    value : `object`
        What the function returned (None when it failed or was skipped).
    error : `TaskError` or `None`
        Why it failed; None when it succeeded or was skipped.
    skipped : `bool`
        True when ``skipExisting`` found its outputs already written; the function did not run.
    """

    dataId: dict | None
    value: Any = None
    error: TaskError | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """Whether the reference is done: the function returned, or its outputs existed already."""
        return self.error is None

    def __str__(self) -> str:
        state = "skipped" if self.skipped else "ok" if self.ok else f"failed: {self.error}"
        return f"{describe_data_id(self.dataId)}: {state}"


@attrs.frozen
class _Outcome:
    """One reference's result as a worker sends it back (the data ID stays with the caller)."""

    value: Any = None
    error: TaskError | None = None
    skipped: bool = False
    lost: bool = False


def map(func: Callable[[Any], Any], dataRefs: Iterable[Any],
        executor: concurrent.futures.Executor | None = None, chunksize: int | None = None,
        skipExisting: bool = False, *, outputs: Sequence[str] | None = None, workers: int | None = None,
        progress: bool = False) -> list[MapResult]:
    """Run ``func(dataRef)`` for every data reference, in parallel; return one `MapResult` per reference.

    Parameters
    ----------
    func : callable
        Called with one `ButlerDataRef` (or whatever ``dataRefs`` holds) in a
        worker. For a process pool it must pickle by reference (a module-level
        function); a Dask executor also takes closures. Its return value comes
        back in `MapResult.value` and must pickle.
    dataRefs : iterable
        The references, such as a `ButlerSubset`. Each must pickle; a
        `ButlerDataRef` does, with its Butler.
    executor : `concurrent.futures.Executor`, optional
        Where to run: any executor (``ThreadPoolExecutor``,
        ``ProcessPoolExecutor``, ``distributed.Client.get_executor()``). It is
        left running. By default a ``ProcessPoolExecutor`` of ``workers``
        processes started with ``spawn`` is made, and shut down at the end.
    chunksize : `int`, optional
        References sent to a worker at once. By default the references are
        cut into `CHUNKS_PER_WORKER` chunks per worker.
    skipExisting : `bool`
        Skip a reference when every dataset type in ``outputs`` exists for its
        data ID in the output repositories (see the module notes).
    outputs : sequence of `str`, optional
        The dataset types ``func`` writes; by default ``func.outputs``, if set.
    workers : `int`, optional
        Processes of the default executor (default ``os.cpu_count()``); also
        used to size chunks for a given executor that does not say.
    progress : `bool`
        Show a tqdm progress bar of the references finished, on standard error.

    Returns
    -------
    results : `list` of `MapResult`
        In the order of ``dataRefs``. Failures are also logged as warnings.

    Raises
    ------
    MapArgumentError
        ``skipExisting`` with no outputs declared, a chunk size below 1, or a
        reference that does not pickle (nothing was run).
    """
    refs = list(dataRefs)
    written = _declared_outputs(func, outputs, skipExisting)
    if chunksize is not None and chunksize < 1:
        raise MapArgumentError(f"chunksize must be at least 1, not {chunksize}")
    if not refs:
        return []
    name = _name(func)
    count = workers or (_worker_count(executor) if executor is not None else os.cpu_count() or 1)
    size = chunksize or max(1, math.ceil(len(refs) / (CHUNKS_PER_WORKER * count)))
    chunks = [range(start, min(start + size, len(refs))) for start in range(0, len(refs), size)]
    payloads = [_pickled([refs[i] for i in chunk]) for chunk in chunks]
    with _running(executor, min(count, len(chunks))) as pool:
        futures = {_submit(pool, func, payload, written): chunk for payload, chunk in zip(payloads, chunks)}
        del payloads
        results: list[MapResult | None] = [None] * len(refs)
        with _bar(len(refs), name, progress) as bar:
            for future in concurrent.futures.as_completed(futures):
                chunk = futures[future]
                outcomes = _outcomes(future, len(chunk))
                finished = [MapResult(_data_id(refs[index]), outcome.value, outcome.error, outcome.skipped)
                            for index, outcome in zip(chunk, outcomes)]
                results[chunk.start:chunk.stop] = finished
                _log_failures(name, finished, lost=outcomes[0].lost)
                bar.update(len(chunk))
    done = [result for result in results if result is not None]
    _log.info("%s: %s", name, summary(done))
    return done


def failures(results: Iterable[MapResult]) -> list[MapResult]:
    """The results of the references that failed."""
    return [result for result in results if not result.ok]


def summary(results: Sequence[MapResult]) -> str:
    """One line counting the references done, skipped as already done, and failed."""
    skipped = sum(result.skipped for result in results)
    failed = len(failures(results))
    return (f"{len(results)} dataRefs: {len(results) - skipped - failed} done, {skipped} skipped "
            f"(already done), {failed} failed")


# -- in this process -----------------------------------------------------------------------------


def _declared_outputs(func: Callable, outputs: Sequence[str] | None, skipExisting: bool) -> tuple[str, ...] | None:
    """The dataset types that say a reference is done, when ``skipExisting`` asks; else None."""
    if not skipExisting:
        return None
    declared = outputs if outputs is not None else getattr(func, "outputs", None)
    if isinstance(declared, str):
        declared = [declared]
    if not declared:
        raise MapArgumentError(f"skipExisting needs the dataset types {_name(func)} "
                               f"writes, to know which data IDs are done: give outputs=[...] or set "
                               f"func.outputs")
    return tuple(declared)


def _name(func: Callable) -> str:
    """The function's name for messages (that of the function a `functools.partial` wraps)."""
    return getattr(func, "__qualname__", None) or getattr(getattr(func, "func", None), "__qualname__", None) \
        or repr(func)


def _pickled(refs: list) -> bytes:
    """One chunk of references, pickled once (their Butler once with them).

    Raises
    ------
    MapArgumentError
        A reference does not pickle (a Butler made with a mapper instance that holds a connection).
    """
    try:
        return pickle.dumps(refs, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        named = ", ".join(describe_data_id(_data_id(ref)) for ref in refs[:3]) + (", ..." if refs[3:] else "")
        raise MapArgumentError(f"cannot send the dataRefs {named} to a worker: they do not pickle ({exc})") from exc


@contextlib.contextmanager
def _running(executor: concurrent.futures.Executor | None, workers: int) -> Iterator[concurrent.futures.Executor]:
    """The executor given, or a process pool of ``workers`` made here and shut down after."""
    if executor is not None:
        yield executor
        return
    # spawn: a worker inherits no open file, connection or lock of this process
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_count(executor: concurrent.futures.Executor) -> int:
    """How many tasks an executor runs at once, as far as it says (else the CPUs here)."""
    count = getattr(executor, "_max_workers", None)  # ThreadPoolExecutor, ProcessPoolExecutor
    client = getattr(executor, "_client", None)  # distributed's ClientExecutor
    if count is None and client is not None:
        with contextlib.suppress(Exception):  # a cluster that cannot say: the default below
            count = sum(client.nthreads().values())
    return max(1, count or os.cpu_count() or 1)


def _submit(pool: concurrent.futures.Executor, func: Callable, payload: bytes,
            outputs: tuple[str, ...] | None) -> concurrent.futures.Future:
    """Submit one chunk; an executor that refuses it (a broken pool) gives a future holding why."""
    try:
        return pool.submit(_run_chunk, func, payload, outputs)
    except Exception as exc:  # noqa: BLE001 - reported for each reference of the chunk
        refused: concurrent.futures.Future = concurrent.futures.Future()
        refused.set_exception(exc)
        return refused


def _outcomes(future: concurrent.futures.Future, size: int) -> list[_Outcome]:
    """The outcomes of a finished chunk; every reference failed with why when the chunk did not come back."""
    try:
        return pickle.loads(future.result())
    except (Exception, concurrent.futures.CancelledError) as exc:  # noqa: BLE001 - whatever the executor raises
        error = TaskError.from_exception(exc, note=f" (its chunk of {size} dataRefs was lost)")
        return [_Outcome(error=error, lost=True)] * size


def _log_failures(name: str, results: list[MapResult], lost: bool) -> None:
    """Log the failures of one chunk: each reference's own, or the whole chunk's at once when it was lost."""
    failed = failures(results)
    if lost:
        _log.warning("%s: a chunk of %d dataRefs was lost, %s (it may have been partly done; a rerun with "
                     "skipExisting finishes what is missing): %s", name, len(failed),
                     ", ".join(describe_data_id(result.dataId) for result in failed), failed[0].error)
        return
    for result in failed:
        _log.warning("%s failed for %s: %s", name, describe_data_id(result.dataId), result.error)


@contextlib.contextmanager
def _bar(total: int, name: str, progress: bool) -> Iterator[Any]:
    from tqdm import tqdm

    with tqdm(total=total, desc=f"map {name}", unit="dataRef", file=sys.stderr, disable=not progress) as bar:
        yield bar


def _data_id(ref: Any) -> dict | None:
    dataId = getattr(ref, "dataId", None)
    return None if dataId is None else dict(dataId)


# -- in the worker -------------------------------------------------------------------------------


def _run_chunk(func: Callable, payload: bytes, outputs: tuple[str, ...] | None) -> bytes:
    """Run ``func`` over one chunk of pickled references; return their pickled `_Outcome` list.

    The references are unpickled here, so their Butler is rebuilt in this
    worker. A value that does not pickle fails its own reference only.
    """
    outcomes = [_run_one(func, ref, outputs) for ref in pickle.loads(payload)]
    try:
        return pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - find the values that do not pickle
        return pickle.dumps([_picklable(outcome) for outcome in outcomes], protocol=pickle.HIGHEST_PROTOCOL)


def _run_one(func: Callable, ref: Any, outputs: tuple[str, ...] | None) -> _Outcome:
    try:
        if outputs and all(ref.datasetExists(datasetType, write=True) for datasetType in outputs):
            return _Outcome(skipped=True)
        return _Outcome(value=func(ref))
    except Exception as exc:  # noqa: BLE001 - one reference's failure, reported with its data ID
        return _Outcome(error=TaskError.from_exception(exc))


def _picklable(outcome: _Outcome) -> _Outcome:
    try:
        pickle.dumps(outcome.value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - the reference fails, the chunk goes on
        return _Outcome(error=TaskError.from_exception(
            exc, note=f" (the value returned, a {type(outcome.value).__qualname__}, cannot be sent back)"))
    return outcome
