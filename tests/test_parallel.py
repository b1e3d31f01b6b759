"""`butler.parallel.map` and ``butler map`` on real repositories, real processes and a real Dask cluster.

The functions run in workers are module-level here, so they pickle by reference:
spawned workers import this module by name. They count their puts in a log
beside the output repository (one line per put, appended), so a test can tell
that a rerun redid nothing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from butler import Butler, MapArgumentError, parallel
from butler.test import TestObject

from conftest import assert_user_error, run_cli

#: data IDs of the toy repositories
IDS = range(12)
#: the data ID whose worker kills itself, once
VICTIM = 5


def _scratch(ref) -> Path:
    """The test's directory (the output repository's parent): where the put log and the kill marker live."""
    return Path(ref.getButler().outputRepositories()[0].root).parent


def double(ref) -> int:
    """Read ``foo``, write twice its value to the output, return it (one get, one put)."""
    value = ref.get("foo").data * 2
    ref.put(TestObject(value), "foo")
    with open(_scratch(ref) / "puts.log", "a") as log:
        log.write(f"{ref.dataId['id']}\n")
    return value


double.outputs = ["foo"]


def fail_five(ref) -> int:
    if ref.dataId["id"] == VICTIM:
        raise ValueError(f"refusing id {VICTIM}")
    return ref.dataId["id"]


def kill_once(ref) -> int:
    """`double`, except that the worker running `VICTIM` kills itself the first time."""
    marker = _scratch(ref) / "killed"
    if ref.dataId["id"] == VICTIM and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return double(ref)


kill_once.outputs = ["foo"]


def kill_always(ref) -> int:
    """`double`, except that the worker running `VICTIM` kills itself every time."""
    if ref.dataId["id"] == VICTIM:
        os.kill(os.getpid(), signal.SIGKILL)
    return double(ref)


def where(ref) -> tuple[int, int]:
    """The process and the Butler object this reference was run with."""
    return os.getpid(), id(ref.getButler())


def unsendable(ref):
    return (lambda: None) if ref.dataId["id"] == 3 else ref.dataId["id"]


def mapper_name(ref) -> str:
    return type(ref.getButler().repositories()[0].mapper).__name__


@pytest.fixture
def toy(tmp_path: Path):
    """Make a Butler over a toy input repository holding ``foo`` = id for `IDS`, writing to a new output."""
    inputs = str(tmp_path / "input")
    writer = Butler(outputs={"root": inputs, "mapper": "butler.test.MapperForTestWriting"})
    for i in IDS:
        writer.put(TestObject(i), "foo", id=i)

    def make(name: str = "out") -> tuple[Butler, list]:
        (tmp_path / name).mkdir()
        butler = Butler(inputs=inputs, outputs=str(tmp_path / name / "repo"))
        return butler, [butler.dataRef("foo", id=i) for i in IDS]

    return make


@pytest.fixture(scope="module")
def pool():
    """Two spawned worker processes, shared by the tests that break nothing (a pool starts in about a second)."""
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def puts(butler: Butler) -> collections.Counter:
    log = Path(butler.outputRepositories()[0].root).parent / "puts.log"
    return collections.Counter(int(line) for line in log.read_text().split())


def written(butler: Butler) -> dict[int, int]:
    """``{id: value}`` of the ``foo`` written to the Butler's output (not those its parent holds)."""
    root = butler.outputRepositories()[0].root
    reader = Butler(inputs=root)
    return {i: reader.get("foo", id=i).data for i in IDS if Path(root, f"filename_id{i}.txt").exists()}


def test_process_pool_results_match_serial(toy, pool):
    serialButler, serialRefs = toy("serial")
    serial = [double(ref) for ref in serialRefs]
    butler, refs = toy("parallel")
    results = parallel.map(double, refs, executor=pool)
    assert [result.dataId for result in results] == [{"id": i} for i in IDS]
    assert [result.value for result in results] == serial == [2 * i for i in IDS]
    assert all(result.ok and not result.skipped for result in results)
    assert written(butler) == written(serialButler) == {i: 2 * i for i in IDS}
    assert puts(butler) == collections.Counter(IDS)


def test_workers_rebuild_the_butler(toy, pool):
    butler, refs = toy()
    inProcesses = parallel.map(where, refs, executor=pool, chunksize=3)
    assert {result.value[0] for result in inProcesses}.isdisjoint({os.getpid()})
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as threads:
        inThreads = parallel.map(where, refs, executor=threads, chunksize=3)
    assert {result.value[0] for result in inThreads} == {os.getpid()}
    # each chunk unpickled its own Butler: none shares this one's connections or caches
    assert id(butler) not in {result.value[1] for result in inThreads}
    for results in (inProcesses, inThreads):  # one Butler per chunk of 3, unpickled once for the chunk
        assert all(len({result.value for result in results[k:k + 3]}) == 1 for k in range(0, len(IDS), 3))


def test_thread_pool_results_match_serial_with_progress(toy, capsys):
    butler, refs = toy()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as threads:
        results = parallel.map(double, refs, executor=threads, progress=True)
    assert [result.value for result in results] == [2 * i for i in IDS]
    assert written(butler) == {i: 2 * i for i in IDS}
    bar = capsys.readouterr().err
    assert "map double: 100%" in bar and f"{len(IDS)}/{len(IDS)}" in bar


def test_failures_come_back_with_their_data_ids(toy, pool, caplog):
    _, refs = toy()
    with caplog.at_level(logging.WARNING, logger="butler.parallel"):
        results = parallel.map(fail_five, refs, executor=pool, chunksize=4)
    failed = parallel.failures(results)
    assert [result.dataId for result in failed] == [{"id": VICTIM}]
    error = failed[0].error
    assert (error.type, error.message) == ("ValueError", f"refusing id {VICTIM}")
    assert "in fail_five" in error.traceback and "ValueError" in error.traceback
    assert [result.value for result in results if result.ok] == [i for i in IDS if i != VICTIM]
    assert f"fail_five failed for {{'id': {VICTIM}}}: ValueError: refusing id {VICTIM}" in caplog.text
    assert parallel.summary(results) == "12 dataRefs: 11 done, 0 skipped (already done), 1 failed"


def test_a_value_that_cannot_be_sent_back_fails_alone(toy, pool):
    _, refs = toy()
    results = parallel.map(unsendable, refs, executor=pool, chunksize=6)
    assert [result.dataId for result in parallel.failures(results)] == [{"id": 3}]
    assert "cannot be sent back" in results[3].error.message
    assert [result.value for result in results if result.ok] == [i for i in IDS if i != 3]


def test_killed_worker_reports_its_chunk_and_a_rerun_finishes_only_what_is_missing(toy, caplog):
    butler, refs = toy()
    with caplog.at_level(logging.WARNING, logger="butler.parallel"):
        first = parallel.map(kill_once, refs, workers=2, chunksize=2)
    assert [result.dataId for result in first] == [{"id": i} for i in IDS]  # none lost silently
    failed = {result.dataId["id"]: result.error for result in parallel.failures(first)}
    assert {VICTIM - 1, VICTIM} <= set(failed)  # the victim's chunk
    assert all(error.type.endswith("BrokenProcessPool") and "was lost" in error.message for error in failed.values())
    assert "a chunk of 2 dataRefs was lost, {'id': 4}, {'id': 5}" in caplog.text
    assert all(result.value == 2 * result.dataId["id"] for result in first if result.ok)

    doneFirst = set(written(butler))  # a worker ended by the broken pool may have put one it did not log
    assert VICTIM - 1 in doneFirst and VICTIM not in doneFirst  # id 4 was put before its chunk's worker died
    putsFirst = puts(butler)

    second = parallel.map(kill_once, refs, workers=2, chunksize=2, skipExisting=True)
    assert all(result.ok for result in second)
    assert {result.dataId["id"] for result in second if result.skipped} == doneFirst
    assert puts(butler) - putsFirst == collections.Counter(set(IDS) - doneFirst)  # the rerun put only the missing
    assert max(puts(butler).values()) == 1  # nothing was put twice over both runs
    assert written(butler) == {i: 2 * i for i in IDS}


def test_a_mapper_trusted_by_being_imported_here_is_trusted_in_the_workers(tmp_path, monkeypatch):
    """The program imported its camera module, so the Butler resolved the mapper its repository names;
    a spawned worker, which has not imported it, must accept it too (and nothing else)."""
    name = f"paracam_{uuid.uuid4().hex[:12]}"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / f"{name}.py").write_text(
        "from butler.test import EmptyTestMapper\n\n\nclass CamMapper(EmptyTestMapper):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("BUTLER_TRUSTED_MAPPERS", raising=False)
    root = str(tmp_path / "repo")
    Butler(outputs={"root": root, "mapper": f"{name}.CamMapper"})
    importlib.import_module(name)  # the program's own module: what its repositories name is trusted
    try:
        butler = Butler(inputs=root)
        results = parallel.map(mapper_name, [butler.dataRef("foo", id=1)], workers=1)
    finally:
        sys.modules.pop(name, None)
    assert [(result.value, result.error) for result in results] == [("CamMapper", None)]


def test_argument_errors(toy, pool):
    _, refs = toy()
    with pytest.raises(MapArgumentError, match="fail_five"):
        parallel.map(fail_five, refs, skipExisting=True)
    with pytest.raises(MapArgumentError, match="chunksize"):
        parallel.map(double, refs, chunksize=0)
    results = parallel.map(fail_five, refs[:2], executor=pool, skipExisting=True, outputs=["foo"])
    assert [result.skipped for result in results] == [False, False]  # nothing written yet
    refs[1].butlerSubset.unsendable = lambda: None
    with pytest.raises(MapArgumentError, match=r"the dataRefs \{'id': 0\}, \{'id': 1\}, \{'id': 2\}, \.\.\. to"):
        parallel.map(double, refs, executor=pool, chunksize=4)
    assert not Path(refs[0].getButler().outputRepositories()[0].root, "filename_id0.txt").exists()


@pytest.fixture(scope="module")
def dask_client():
    """A client of a local cluster of 2 worker processes; a task is given up after its second worker death."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                     silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.xdist_group("dask")
def test_dask_cluster(toy, dask_client):
    butler, refs = toy()
    results = parallel.map(double, refs, executor=dask_client.get_executor())
    assert [result.value for result in results] == [2 * i for i in IDS]
    assert written(butler) == {i: 2 * i for i in IDS}
    assert os.getpid() not in {result.value[0] for result in parallel.map(where, refs,
                                                                          executor=dask_client.get_executor())}
    failed = parallel.failures(parallel.map(fail_five, refs, executor=dask_client.get_executor()))
    assert [(result.dataId, result.error.type) for result in failed] == [({"id": VICTIM}, "ValueError")]


@pytest.mark.xdist_group("dask")
def test_dask_worker_deaths(toy, dask_client):
    butler, refs = toy()
    # killed once: Dask reruns the chunk elsewhere, so nothing is lost (the chunk's puts before the kill happen twice)
    results = parallel.map(kill_once, refs, executor=dask_client.get_executor(), chunksize=2)
    assert all(result.ok for result in results) and written(butler) == {i: 2 * i for i in IDS}
    assert puts(butler)[VICTIM] == 1 and set(puts(butler)) == set(IDS)

    butler, refs = toy("again")
    results = parallel.map(kill_always, refs, executor=dask_client.get_executor(), chunksize=2)
    failed = {result.dataId["id"]: result.error for result in parallel.failures(results)}
    # its chunk, given up: reported, never dropped (a chunk queued on the dying worker may be given up with it)
    assert {VICTIM - 1, VICTIM} <= set(failed)
    assert all(error.type.endswith("KilledWorker") and "was lost" in error.message for error in failed.values())
    assert {i: 2 * i for i in IDS if i not in failed}.items() <= written(butler).items()
    assert VICTIM not in written(butler)


# -- the command ------------------------------------------------------------------------------------

TASK_MODULE = """\
import os

def summarize(ref):
    md = ref.get("raw_md")
    if str(ref.dataId["visit"]) == os.environ.get("FAIL_VISIT"):
        raise RuntimeError(f"visit {ref.dataId['visit']} refused")
    ref.put({"visit": ref.dataId["visit"], "obsid": int(md["OBSID"])}, "processCcd_metadata")
    return int(md["OBSID"])

summarize.outputs = ["processCcd_metadata"]


def bump(ref):
    from butler.test import TestObject

    ref.put(TestObject(ref.get("foo").data + 1), "foo")
"""


def run_map(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(tmp_path / "tasks"), str(Path(__file__).resolve().parents[1])])
    return subprocess.run([sys.executable, "-m", "butler", "map", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": path, **(env or {})})


@pytest.fixture
def task_module(tmp_path: Path) -> Iterator[str]:
    """A user's task module in ``tmp_path/tasks``; forgotten afterwards by a test that imported it here."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mytasks.py").write_text(TASK_MODULE)
    yield "mytasks:summarize"
    sys.modules.pop("mytasks", None)


def test_cli_map_reports_failures_and_reruns(shared_data_untouched, tmp_path, task_module):
    root = str(shared_data_untouched / "obs_test" / "data" / "input")
    out = tmp_path / "rerun"
    first = run_map(tmp_path, task_module, root, "raw", "--output", str(out), "--workers", "2",
                    env={"FAIL_VISIT": "2"})
    assert first.returncode == 1, first.stderr
    assert "3 dataRefs: 2 done, 0 skipped (already done), 1 failed" in first.stdout
    assert "summarize failed for {'filter': 'g', 'visit': 2}: RuntimeError: visit 2 refused" in first.stderr
    assert sorted(p.name for p in (out / "processCcd_metadata").iterdir()) == ["v1_fg.yaml", "v3_fr.yaml"]

    second = run_map(tmp_path, task_module, root, "raw", "--output", str(out), "--skip-existing")
    assert second.returncode == 0, second.stderr
    assert "3 dataRefs: 1 done, 2 skipped (already done), 0 failed" in second.stdout
    assert Butler(inputs=str(out)).get("processCcd_metadata", visit=2, filter="g")["obsid"] == 890106021

    only = run_map(tmp_path, task_module, root, "raw", "filter=r", "--output", str(tmp_path / "r"),
                   "--workers", "1")
    assert only.returncode == 0 and "1 dataRefs: 1 done" in only.stdout, only.stderr


def test_cli_map_user_errors(shared_data, tmp_path, task_module, monkeypatch):
    root = str(shared_data / "obs_test" / "data" / "input")
    monkeypatch.syspath_prepend(str(tmp_path / "tasks"))
    (tmp_path / "tasks" / "mytasks_broken.py").write_text("1 / 0\n")
    for args, words in [((task_module.replace("summarize", "nope"), root, "raw"), "no function 'nope'"),
                        (("nomodule_here:f", root, "raw"), "cannot import 'nomodule_here'"),
                        (("mytasks_broken:f", root, "raw"), "ZeroDivisionError"),
                        (("summarize", root, "raw"), "expected PKG.MOD:FUNC"),
                        ((task_module, root, "raw", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"),
                         "not both"),
                        ((task_module, root, "raw", "vist=1"), "unknown data ID key 'vist'"),
                        ((task_module, str(tmp_path / "none"), "raw"), "no such repository root")]:
        assert_user_error(run_cli("map", *args, "--output", str(tmp_path / "o")), words)
    assert not (tmp_path / "o" / "processCcd_metadata").exists()


def test_cli_map_writes_into_root_without_output(toy, tmp_path, task_module, monkeypatch):
    toy()
    monkeypatch.syspath_prepend(str(tmp_path / "tasks"))  # the spawned worker gets this process's path
    result = run_cli("map", "mytasks:bump", str(tmp_path / "input"), "foo", "id=3", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert "mytasks:bump over foo: 1 dataRefs: 1 done, 0 skipped (already done), 0 failed" in result.stdout
    assert Butler(inputs=str(tmp_path / "input")).get("foo", id=3).data == 4  # ROOT opened read-write


def _prepend_path(path: str) -> None:
    sys.path.insert(0, path)


@pytest.mark.xdist_group("dask")
def test_cli_map_on_a_dask_scheduler(shared_data, tmp_path, task_module, dask_client, monkeypatch):
    root = str(shared_data / "obs_test" / "data" / "input")
    # the scheduler (in this process) and the workers unpickle FUNC by reference: they import its module too
    monkeypatch.syspath_prepend(str(tmp_path / "tasks"))
    dask_client.run(_prepend_path, str(tmp_path / "tasks"))
    out = tmp_path / "rerun"
    result = run_map(tmp_path, task_module, root, "raw", "--output", str(out), "--scheduler",
                     dask_client.scheduler_info()["address"])
    assert result.returncode == 0, result.stderr
    assert "3 dataRefs: 3 done" in result.stdout
    assert len(list((out / "processCcd_metadata").iterdir())) == 3
