"""Provenance: recording reads and writes, the records stored beside each output, lineage, crash safety.

The processing script runs on the real obs_test repository (read-only, through
`shared_data`): calibrations are made in a calibration repository, then
raw + bias + flat -> postISRCCD (rerun 1) -> src -> a summary (rerun 2).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import Table

from butler import Butler, RepositoryArgs
from butler.errors import NoResults, UnwritableObjectError
from butler.provenance import read_lineage
from butler.registry.provenance import PROVENANCE_FILENAME, ProvenanceStore
from butler.storage import Storage
from butler.test import MapperForTestWriting, TestObject

VISITS = {1: "g", 2: "g", 3: "r"}


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def journals(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(f"{PROVENANCE_FILENAME}-*.sqlite3-journal"))


def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _image(value: float) -> CCDData:
    return CCDData(np.full((2000, 1026), value, dtype=np.float32), unit="adu")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, shared_data):
    """The three-step script, run once: its repositories and the summary's lineage."""
    tmp = tmp_path_factory.mktemp("pipeline")
    camera = shared_data / "obs_test" / "data" / "input"
    before = listing(camera)
    calib, rerun1, rerun2 = tmp / "calib", tmp / "rerun1", tmp / "rerun2"
    maker = Butler(inputs=str(camera), outputs=str(calib))
    maker.put(_image(10.0), "bias", visit=1)
    for visit in (1, 3):  # one flat per filter
        maker.put(_image(2.0), "flat", visit=visit)
    del maker
    gc.collect()  # the Butler finishes its records and closes its stores

    calibInput = RepositoryArgs(root=str(calib), mapperArgs={"calibRoot": str(calib)})
    isr = Butler(inputs=calibInput, outputs=str(rerun1))
    for visit in VISITS:
        with isr.quantum("isr", config={"doFlat": True}):
            raw = isr.get("raw", visit=visit)
            bias, flat = isr.get("bias", visit=visit), isr.get("flat", visit=visit)
            isr.put(CCDData((raw.data - bias.data) / flat.data, unit="adu"), "postISRCCD", visit=visit)
    del isr
    gc.collect()  # the Butler finishes its records and closes its stores

    detect = Butler(inputs=str(rerun1), outputs=RepositoryArgs(root=str(rerun2), mode="rw"))
    for visit in VISITS:
        with detect.quantum("detect", config={"threshold": 5.0}):
            image = detect.get("postISRCCD", visit=visit)
            detect.get("raw_md", visit=visit)  # looked at, then declared unused
            detect.markInputUnused("raw_md", visit=visit)
            bright = image.data > np.median(image.data) + 5.0 * np.std(image.data)
            detect.put(Table({"id": np.arange(3), "count": np.full(3, int(bright.sum()))}), "src", visit=visit)
    with detect.quantum("summary"):
        counts = {visit: int(detect.get("src", visit=visit)["count"][0]) for visit in VISITS}
        detect.put({"counts": counts}, "processCcd_metadata", visit=1)
    del detect
    gc.collect()  # the Butler finishes its records and closes its stores

    reader = Butler(inputs=str(rerun2))
    return {"camera": camera, "before": before, "calib": calib, "rerun1": rerun1, "rerun2": rerun2,
            "summary": reader.provenance("processCcd_metadata", visit=1), "reader": reader}


def test_summary_lineage_names_every_raw_bias_and_flat_by_path_and_digest(pipeline):
    summary = pipeline["summary"]
    assert summary.datasetType == "processCcd_metadata" and summary.quantum == "summary"
    assert summary.sha256 == sha256(pipeline["rerun2"] / summary.path)
    found = {(item.datasetType, item.dataId.get("visit")): item for _, item in summary.walk()}
    camera, calib = pipeline["camera"], pipeline["calib"]
    for visit, filter_ in VISITS.items():
        raw = found[("raw", visit)]
        assert raw.repository == str(camera) and raw.path == f"raw/raw_v{visit}_f{filter_}.fits.gz"
        assert raw.size == (camera / raw.path).stat().st_size and raw.uuid is None  # no record: read as found
        assert found[("src", visit)].record.quantum == "detect"
        assert found[("postISRCCD", visit)].record.config == {"doFlat": True}
    paths = {item.path: item for _, item in summary.walk() if item.datasetType in ("bias", "flat")}
    assert sorted(paths) == ["bias/bias.fits.gz", "flat/flat_fg.fits.gz", "flat/flat_fr.fits.gz"]
    for path, item in paths.items():
        assert item.repository == str(calib)
        assert item.sha256 == sha256(calib / path)  # the digest taken while writing = the file's
        assert item.record is not None and item.record.sha256 == item.sha256


def test_mark_input_unused_drops_the_read(pipeline):
    src = pipeline["reader"].provenance("src", visit=2)
    assert [item.datasetType for item in src.inputs] == ["postISRCCD"]  # raw_md was read, then marked unused
    writer = Butler(inputs=str(pipeline["rerun2"]), outputs=str(pipeline["rerun2"].parent / "marking"))
    with pytest.raises(NoResults, match="read no such dataset"):
        writer.markInputUnused("raw", visit=1)


def test_a_butler_without_outputs_records_nothing(pipeline):
    # nothing it reads can become an input of a record: no recorder, no stat per get, no journal
    reader = pipeline["reader"]
    assert reader._recorder is None
    assert reader.get("src", visit=2) is not None
    reader.markInputUnused("raw", visit=1)  # as with recording off: nothing to drop, nothing said
    assert Butler(inputs=str(pipeline["rerun2"]), outputs=str(pipeline["rerun2"].parent / "out"))._recorder is not None


def test_depth_limits_how_far_inputs_are_followed(pipeline):
    summary = pipeline["reader"].provenance("processCcd_metadata", visit=1, depth=1)
    assert [item.datasetType for item in summary.inputs] == ["src", "src", "src"]
    assert all(item.record is None and item.sha256 for item in summary.inputs)


def test_inputs_are_never_written(pipeline):
    assert listing(pipeline["camera"]) == pipeline["before"]
    assert not (pipeline["camera"] / PROVENANCE_FILENAME).exists()
    calib = pipeline["calib"]
    assert sorted(p.name for p in calib.iterdir()) == ["bias", "flat", PROVENANCE_FILENAME, "repositoryCfg.yaml"]


def test_a_repository_read_after_its_writers_closed_gains_no_file(tmp_path):
    root = tmp_path / "a"
    writer = Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    writer.put(TestObject(1), "foo", visit=1, ccd=0)
    del writer
    before = listing(root)
    reader = Butler(inputs=str(root), outputs=str(tmp_path / "b"))
    reader.put(reader.get("foo", visit=1, ccd=0), "foo", visit=2, ccd=0)
    assert reader.provenance("foo", visit=2, ccd=0).inputs[0].record.sha256 == sha256(
        root / "filename_ccd0_visit1.txt")
    assert listing(root) == before  # no -wal, no -shm: the database was read immutable


def test_lifetime_scope_and_run_information(tmp_path):
    butler = Butler(outputs=RepositoryArgs(root=str(tmp_path / "a"), mapper=MapperForTestWriting, mode="rw"))
    butler.put(TestObject(1), "foo", visit=1, ccd=0)
    butler.get("foo", visit=1, ccd=0)
    butler.put(TestObject(2), "foo", visit=2, ccd=0)
    record = butler.provenance("foo", visit=2, ccd=0)
    assert [item.dataId for item in record.inputs] == [{"ccd": 0, "visit": 1}]
    assert record.quantum is None and record.config is None and record.state == "done"
    run = record.run
    assert run.outputs == (str(tmp_path / "a"),) and run.python and run.packages["butler"] and run.host
    assert run.start <= record.time <= run.end


def test_recording_can_be_turned_off(tmp_path, monkeypatch):
    off = Butler(outputs=RepositoryArgs(root=str(tmp_path / "a"), mapper=MapperForTestWriting),
                 recordProvenance=False)
    off.put(TestObject(1), "foo", visit=1, ccd=0)
    monkeypatch.setenv("BUTLER_PROVENANCE", "0")
    env = Butler(outputs=RepositoryArgs(root=str(tmp_path / "b"), mapper=MapperForTestWriting))
    env.put(TestObject(1), "foo", visit=1, ccd=0)
    assert not (tmp_path / "a" / PROVENANCE_FILENAME).exists() and not (tmp_path / "b" / PROVENANCE_FILENAME).exists()


def test_quantum_config_must_be_json_data(tmp_path):
    butler = Butler(outputs=RepositoryArgs(root=str(tmp_path / "a"), mapper=MapperForTestWriting))
    with pytest.raises(UnwritableObjectError, match="config of quantum 'task'"):
        with butler.quantum("task", config={"when": object()}):
            pass


def _put_many(root: str, worker: int, count: int) -> None:
    butler = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    for i in range(count):
        butler.put(TestObject((worker, i)), "foo", visit=worker, ccd=i)


def test_eight_processes_writing_one_output_lose_no_record(tmp_path):
    root = str(tmp_path / "out")
    Butler(outputs=RepositoryArgs(root=root, mapper=MapperForTestWriting, mode="rw"))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_put_many, args=(root, w, 20)) for w in range(8)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    storage = Storage.openExisting(root)
    store = ProvenanceStore.for_reading(storage)
    rows = store.datasets()
    store.close()
    assert len(rows) == 8 * 20 and len({row["uuid"] for row in rows}) == 8 * 20
    assert len({row["run"] for row in rows}) == 8
    for worker in range(8):
        for i in range(20):
            record = read_lineage(storage, f"filename_ccd{i}_visit{worker}.txt")
            assert record is not None and record.sha256 == sha256(Path(root) / record.path)


def _put_forever(root: str, seed: int) -> None:
    butler = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    rng = np.random.default_rng(seed)
    for i in range(1_000_000):
        payload = rng.bytes(int(rng.integers(1, 1 << 20)))  # up to 1 MiB: the write takes a while
        butler.put(TestObject((seed, i, payload)), "foo", visit=i % 5, ccd=0)


def test_sigkill_mid_put_leaves_file_and_record_both_present_or_both_absent(tmp_path):
    root = tmp_path / "out"
    Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    context = multiprocessing.get_context("fork")
    rng = np.random.default_rng(7)
    for round_ in range(6):
        child = context.Process(target=_put_forever, args=(str(root), round_))
        child.start()
        time.sleep(0.3 + float(rng.uniform(0, 0.5)))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        storage = Storage.openExisting(str(root))
        for visit in range(5):
            path = f"filename_ccd0_visit{visit}.txt"
            record = read_lineage(storage, path)
            assert (record is not None) == (root / path).exists(), (round_, path)
            if record is not None:
                assert record.sha256 == sha256(root / path), (round_, path)
    before = {path: read_lineage(storage, path) for path in (f"filename_ccd0_visit{v}.txt" for v in range(5))}
    assert journals(root), "the killed writers' journals are where their records are"
    _put_many(str(root), 9, 1)  # the next writer folds the dead writers' journals, then removes its own
    gc.collect()
    assert journals(root) == []
    with contextlib.closing(sqlite3.connect(f"file:{root / PROVENANCE_FILENAME}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    for path, record in before.items():
        after = read_lineage(storage, path)
        assert (after is None, after and after.uuid) == (record is None, record and record.uuid), path


def test_a_pending_record_counts_only_with_its_file(tmp_path):
    """The two states a kill can leave: a pending record and no file yet; the file published."""
    root = tmp_path / "out"
    storage = Storage.makeFromURI(str(root), create=True)
    store = ProvenanceStore.for_writing(storage)
    data = b"bytes about to be published"
    store.add_pending({"uuid": "u1", "run": "r", "datasetType": "foo", "dataId": "{}", "path": "f.txt",
                       "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "time": "t"},
                      None, [], None, None)
    assert read_lineage(storage, "f.txt") is None  # killed before the rename: neither
    storage.writeBytes("f.txt", data)
    assert read_lineage(storage, "f.txt").state == "pending"  # killed after it: both
    storage.writeBytes("f.txt", b"other bytes")
    assert read_lineage(storage, "f.txt") is None
    store.close()


def test_a_butler_alternating_gets_and_puts_writes_each_input_once(tmp_path):
    root = tmp_path / "a"
    butler = Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    butler.put(TestObject(0), "foo", visit=0, ccd=0)
    for visit in range(1, 31):
        butler.put(butler.get("foo", visit=visit - 1, ccd=0), "foo", visit=visit, ccd=0)
    butler.put(TestObject("again"), "foo", visit=99, ccd=0)  # nothing new read: the same inputs, no new edge
    last = butler.provenance("foo", visit=99, ccd=0, depth=1)
    assert [item.dataId["visit"] for item in last.inputs] == list(range(30))  # everything read, in order
    butler.markInputUnused("foo", visit=3, ccd=0)
    butler.put(TestObject("after"), "foo", visit=100, ccd=0)
    after = butler.provenance("foo", visit=100, ccd=0, depth=1)
    assert [item.dataId["visit"] for item in after.inputs] == [v for v in range(30) if v != 3]
    with contextlib.closing(sqlite3.connect(f"file:{root / PROVENANCE_FILENAME}?mode=ro", uri=True)) as db:
        edges = db.execute("SELECT COUNT(*) FROM edge").fetchone()[0]
    assert edges == 30 + 29  # each read once, then once more for the set rebuilt without visit 3


def _put_and_read_back(root: str, reader_path: str, conn) -> None:
    """Put (recording into this process's journal), and tell the parent through ``conn`` what a reader sees."""
    butler = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    butler.put(TestObject("child"), "foo", visit=2, ccd=0)
    conn.send("put")
    conn.recv()  # the parent has read it: now finish
    del butler


def test_records_of_a_live_writer_are_read_from_its_journal(tmp_path):
    """A record is visible to other processes from the moment its put returns, before any fold."""
    root = tmp_path / "out"
    Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_put_and_read_back, args=(str(root), "", child))
    process.start()
    assert parent.poll(60) and parent.recv() == "put"
    storage = Storage.openExisting(str(root))
    live = read_lineage(storage, "filename_ccd0_visit2.txt")
    assert live is not None and live.state == "pending" and live.sha256 == sha256(root / live.path)
    assert len(journals(root)) == 1
    with contextlib.closing(sqlite3.connect(f"file:{root / PROVENANCE_FILENAME}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT COUNT(*) FROM dataset").fetchone()[0] == 0  # nothing folded yet
    parent.send("go")
    process.join(60)
    assert process.exitcode == 0
    done = read_lineage(storage, "filename_ccd0_visit2.txt")
    assert (done.uuid, done.state) == (live.uuid, "done") and journals(root) == []


def test_a_journal_is_folded_every_few_hundred_records(tmp_path):
    from butler.provenance.recording import FOLD_EVERY

    root = tmp_path / "out"
    butler = Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    for i in range(FOLD_EVERY + 3):
        butler.put(TestObject(i), "foo", visit=i, ccd=0)
    with contextlib.closing(sqlite3.connect(f"file:{root / PROVENANCE_FILENAME}?mode=ro", uri=True)) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM dataset GROUP BY state").fetchall())
    assert states == {"done": FOLD_EVERY}  # folded as done; the last 3 only in the journal
    store = ProvenanceStore.for_reading(Storage.openExisting(str(root)))
    assert len(store.datasets()) == FOLD_EVERY + 3 and len({row["uuid"] for row in store.datasets()}) == FOLD_EVERY + 3
    store.close()
    last = butler.provenance("foo", visit=FOLD_EVERY + 2, ccd=0)
    assert last.state == "done" and [item.dataId["visit"] for item in last.inputs] == []


def _put_with_the_parents_butler(butler: Butler) -> None:
    butler.put(TestObject("child"), "foo", visit=1, ccd=0)
    assert butler.provenance("foo", visit=1, ccd=0).state == "done"  # asking finishes the child's records


def test_a_forked_child_records_in_a_journal_of_its_own(tmp_path):
    root = tmp_path / "out"
    butler = Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    butler.put(TestObject("parent"), "foo", visit=0, ccd=0)
    context = multiprocessing.get_context("fork")
    process = context.Process(target=_put_with_the_parents_butler, args=(butler,))
    process.start()
    process.join(60)
    assert process.exitcode == 0
    butler.put(TestObject("parent again"), "foo", visit=2, ccd=0)
    del butler
    gc.collect()
    storage = Storage.openExisting(str(root))
    for visit in range(3):
        record = read_lineage(storage, f"filename_ccd0_visit{visit}.txt")
        assert record is not None and record.state == "done", visit
        assert record.sha256 == sha256(root / record.path)
    assert len(journals(root)) == 1  # the child's: it ended without closing its Butler (os._exit)
    _put_many(str(root), 9, 1)  # the next writer folds it
    gc.collect()
    assert journals(root) == [] and read_lineage(storage, "filename_ccd0_visit1.txt").state == "done"


def test_butler_fsync_makes_the_store_synchronous(tmp_path):
    script = (
        "import sys\n"
        "from butler import Butler, RepositoryArgs\n"
        "from butler.test import MapperForTestWriting, TestObject\n"
        "b = Butler(outputs=RepositoryArgs(root=sys.argv[1], mapper=MapperForTestWriting))\n"
        "b.put(TestObject(1), 'foo', visit=1, ccd=0)\n"
        "store = b._recorder._outputs[b.outputRepositories()[0].root].store\n"
        "print(store._conn.execute('PRAGMA synchronous').fetchone()[0])\n")
    levels = {}
    for flag in ("0", "1"):
        env = {**os.environ, "BUTLER_FSYNC": flag}
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path / flag)], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        levels[flag] = int(result.stdout.strip())
    assert levels == {"0": 1, "1": 2}  # NORMAL (no fsync per commit), FULL


def test_a_store_written_before_journals_is_read(tmp_path):
    root = tmp_path / "a"
    writer = Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    writer.put(TestObject(1), "foo", visit=1, ccd=0)
    del writer
    gc.collect()
    with contextlib.closing(sqlite3.connect(str(root / PROVENANCE_FILENAME))) as db:
        db.execute("DROP TABLE journal")  # as the store was before journals
        db.commit()
    record = read_lineage(Storage.openExisting(str(root)), "filename_ccd0_visit1.txt")
    assert record is not None and record.state == "done" and record.sha256 == sha256(root / record.path)
