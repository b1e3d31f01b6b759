"""Storage conformance: every primitive and derived operation, run unchanged against every backend.

A backend is a `Backend` in `BACKENDS`: how to name a fresh root, and how to
put files there behind the storage's back (``seed``). Tests that read take
the ``storage`` fixture; tests that write take ``writable`` and are skipped
for a backend marked ``read_only`` (the HTTP backend). Backends: POSIX, in-memory,
a served repository over HTTP, S3 on rclone and on moto; a new one adds one entry here.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import attrs
import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import Table
from s3_server import s3_env
from service_server import served_scratch

from butler.cfg import RepositoryCfg
from butler.errors import DatasetNotFoundError, RepositoryError, UnsafePathError, UnwritableObjectError
from butler.location import ButlerLocation
from butler.storage import MemStorage, PosixStorage, Storage, StorageInterface, mem as mem_module
from butler.storage.http import HttpStorage
from butler.storage.s3 import S3Storage
from butler.test import EmptyTestMapper, TestObject


@attrs.define
class Backend:
    """How the suite gets a fresh root of one storage kind, and puts files there directly.

    An S3 backend names the session fixture of its server (tests/s3_server.py);
    the ``backend`` fixture binds it (``server``) and points the process at it.
    """

    name: str
    storage_class: type
    read_only: bool = False
    server_fixture: str | None = None
    server: Any = None

    def fresh_root(self, tmp_path) -> str:
        if self.name == "file":
            return str(tmp_path / "repo")
        if self.name == "http":  # a directory of the session's served scratch repository
            return f"{served_scratch()[1].repo('scratch')}/conformance-{uuid.uuid4().hex}"
        if self.server is not None:
            return f"s3://{self.server.bucket}/conformance-{uuid.uuid4().hex}/repo"
        return f"mem://conformance-{uuid.uuid4().hex}/repo"

    def seed(self, root: str, files: dict[str, bytes]) -> None:
        """Place files at a root without going through the storage under test's write path."""
        if self.name in ("file", "http"):
            if self.name == "http":  # the served directory, on this machine
                root = str(served_scratch()[0] / root.rsplit("/", 1)[1])
            for relpath, data in files.items():
                path = os.path.join(root, relpath)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as stream:
                    stream.write(data)
        elif self.server is not None:  # a bare boto3 client, as another program would
            bucket, _, prefix = root[len("s3://"):].partition("/")
            client = self.server.client()
            for relpath, data in files.items():
                client.put_object(Bucket=bucket, Key=f"{prefix}/{relpath}", Body=data)
        else:
            mem_module._roots.add(root)
            for relpath, data in files.items():
                mem_module._files[f"{root}/{relpath}"] = data


BACKENDS = [Backend("file", PosixStorage), Backend("mem", MemStorage), Backend("http", HttpStorage, read_only=True),
            Backend("s3-rclone", S3Storage, server_fixture="rclone_s3"),
            Backend("s3-moto", S3Storage, server_fixture="moto_s3")]

SEED = {"a.txt": b"alpha", "dir/b.txt": b"beta", "dir/sub/c.txt": b"gamma", "raw/v1.fits.gz": b"gz"}


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request, monkeypatch, tmp_path):
    backend = request.param
    if backend.server_fixture is not None:
        backend = attrs.evolve(backend, server=request.getfixturevalue(backend.server_fixture))
        s3_env(backend.server, monkeypatch, str(tmp_path / "s3-cache"))
    yield backend
    mem_module.clear()


@pytest.fixture
def root(backend, tmp_path):
    root = backend.fresh_root(tmp_path)
    backend.seed(root, SEED)
    return root


@pytest.fixture
def storage(backend, root):
    return Storage.makeFromURI(root, create=False)


@pytest.fixture
def writable(backend, storage):
    if backend.read_only:
        pytest.skip(f"{backend.name} storage is read-only")
    return storage


def _location(storage, paths, storageName="PickleStorage", pythonType=None, additionalData=None):
    return ButlerLocation(pythonType, None, storageName, paths, {"visit": 1}, None, storage,
                          datasetType="thing", additionalData=additionalData)


# -- construction and the scheme table ------------------------------------------------------------

def test_make_from_uri_gives_the_backend_class(backend, storage):
    assert type(storage) is backend.storage_class and isinstance(storage, StorageInterface)
    assert Storage.storageExists(storage.root)


def test_missing_root_without_create_is_an_error_and_creates_nothing(backend, tmp_path):
    missing = backend.fresh_root(tmp_path)
    with pytest.raises(RepositoryError, match="no repository"):
        Storage.makeFromURI(missing, create=False)
    assert not Storage.storageExists(missing)
    assert Storage.search(missing, "a.txt") is None


def test_create_makes_an_empty_root(backend, tmp_path):
    if backend.read_only:
        pytest.skip("read-only")
    fresh = backend.fresh_root(tmp_path)
    created = Storage.makeFromURI(fresh, create=True)
    assert Storage.storageExists(fresh) and created.listNames() == []


# -- read primitives ------------------------------------------------------------------------------

def test_exists_files_directories_and_hdu_selectors(storage):
    assert storage.exists("a.txt") and storage.exists("dir/sub/c.txt") and storage.exists("dir")
    assert storage.exists("a.txt[3]")
    assert not storage.exists("missing.txt") and not storage.exists("dir/missing")


def test_open_read_and_read_bytes(storage):
    with storage.openRead("dir/b.txt") as stream:
        assert stream.read() == b"beta"
    assert storage.readBytes("dir/sub/c.txt") == b"gamma"


def test_missing_file_is_dataset_not_found_naming_it(storage):
    with pytest.raises(DatasetNotFoundError, match="nope.txt") as info:
        storage.readBytes("nope.txt")
    assert isinstance(info.value, FileNotFoundError)


def test_local_file_holds_the_bytes(storage):
    with storage.localFile("dir/b.txt") as local, open(local, "rb") as stream:
        assert stream.read() == b"beta"
    if storage.hasLocalFiles:
        assert local == storage.locationWithRoot("dir/b.txt")  # the file itself: it may be memory-mapped
    else:
        assert not os.path.exists(local)  # a private copy, gone after the block


def test_list_names_under_a_prefix(storage):
    assert storage.listNames() == sorted(SEED)
    assert storage.listNames("dir") == ["dir/b.txt", "dir/sub/c.txt"]
    assert storage.listNames("nothing") == []


def test_get_local_file_and_location_with_root(storage):
    with storage.getLocalFile("a.txt") as stream:
        assert stream.read() == "alpha"
    assert storage.getLocalFile("missing.txt") is None
    assert storage.locationWithRoot("dir/b.txt") == storage.root + "/dir/b.txt"


def test_search_globs_keeps_hdu_and_answers_absolute_queries(storage):
    assert storage.instanceSearch("dir/*.txt") == ["dir/b.txt"]
    assert storage.instanceSearch("dir/*/c.txt[2]") == ["dir/sub/c.txt[2]"]
    assert storage.instanceSearch("*.txt") == ["a.txt"]
    assert storage.instanceSearch("missing*") is None
    absolute = storage.locationWithRoot("dir/b.txt")
    assert storage.instanceSearch(absolute + "[1]") == [absolute + "[1]"]
    assert Storage.search(storage.root, "a.txt") == ["a.txt"]


def test_compressed_variants_are_found(storage):
    assert storage.findCompressed("a.txt") == "a.txt"
    assert storage.findCompressed("raw/v1.fits[1]") == "raw/v1.fits.gz[1]"
    assert storage.findCompressed("raw/v2.fits") == "raw/v2.fits"


def test_paths_that_escape_the_root_are_refused_everywhere(backend, storage):
    for bad in ("../x.txt", "/etc/passwd", "dir/../../x.txt"):
        for operation in (storage.exists, storage.readBytes, storage.localFile, storage.writer,
                          storage.remove, storage.lock, storage.backup, storage.instanceSearch):
            with pytest.raises(UnsafePathError, match="outside"):
                operation(bad)
        with pytest.raises(UnsafePathError):
            storage.writeBytes(bad, b"escaped")
    assert storage.listNames() == sorted(SEED)


def test_relative_and_absolute_paths_in_the_root_scheme(storage):
    child = storage.locationWithRoot("child")
    assert Storage.relativePath(storage.root, child) == "child"
    assert Storage.absolutePath(child, "../other") == storage.locationWithRoot("other")
    assert Storage.absolutePath(child, "mem://else/x") == "mem://else/x"


# -- write primitives -----------------------------------------------------------------------------

def test_write_bytes_replaces_whole_files(writable):
    writable.writeBytes("new/deep/x.bin", b"one")
    writable.writeBytes("new/deep/x.bin", b"two")
    assert writable.readBytes("new/deep/x.bin") == b"two"
    assert writable.listNames("new") == ["new/deep/x.bin"]


def test_writer_publishes_on_success_and_nothing_on_failure(writable):
    with writable.writer("w.txt") as tmp:
        assert not writable.exists("w.txt")  # nothing visible before the block ends
        with open(tmp, "wb") as stream:
            stream.write(b"done")
    assert writable.readBytes("w.txt") == b"done"
    with pytest.raises(RuntimeError, match="boom"), writable.writer("w.txt") as tmp:
        with open(tmp, "wb") as stream:
            stream.write(b"half")
        raise RuntimeError("boom")
    assert writable.readBytes("w.txt") == b"done"
    with pytest.raises(RuntimeError), writable.writer("fresh/only.txt"):
        raise RuntimeError("boom")
    assert not writable.exists("fresh/only.txt")
    assert sorted(writable.listNames()) == sorted([*SEED, "w.txt"])


def test_put_file_copy_move_link_symlink(writable, tmp_path):
    source = tmp_path / "outside.bin"
    for mode in ("copy", "link", "symlink"):
        source.write_bytes(mode.encode())
        writable.putFile(str(source), f"in/{mode}.bin", mode=mode)
        assert writable.readBytes(f"in/{mode}.bin") == mode.encode()
    assert source.exists()
    source.write_bytes(b"moved")
    writable.putFile(str(source), "in/move.bin", mode="move")
    assert not source.exists() and writable.readBytes("in/move.bin") == b"moved"
    with pytest.raises(ValueError, match="teleport"):
        writable.putFile(str(tmp_path / "x"), "in/x.bin", mode="teleport")
    with pytest.raises(UnsafePathError):
        writable.putFile(str(tmp_path / "x"), "../x.bin")


def test_remove(writable):
    writable.remove("dir/b.txt")
    assert not writable.exists("dir/b.txt")
    with pytest.raises(DatasetNotFoundError, match="dir/b.txt"):
        writable.remove("dir/b.txt")


def test_copy_file(writable):
    writable.copyFile("a.txt", "copies/a.txt")
    assert writable.readBytes("copies/a.txt") == b"alpha"
    with pytest.raises(DatasetNotFoundError):
        writable.copyFile("nope.txt", "copies/nope.txt")
    assert not writable.exists("copies/nope.txt")


def test_lock_excludes_other_holders(writable):
    inside = []

    def hold(tag):
        with writable.lock("dir/b.txt"):
            inside.append(tag)
            time.sleep(0.05)
            inside.append(tag)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(inside) == 6
    assert all(inside[i] == inside[i + 1] for i in range(0, 6, 2))  # never interleaved


# -- derived: objects through the formatters ------------------------------------------------------

@pytest.mark.parametrize("storageName, obj", [
    ("PickleStorage", TestObject({"a": [1, 2]})),
    ("YamlStorage", {"b": [1, 2], "c": "text"}),
    ("TextStorage", "some text\n"),
    ("NumpyStorage", np.arange(6.0).reshape(2, 3)),
])
def test_objects_round_trip(writable, storageName, obj):
    location = _location(writable, "objects/thing.bin", storageName)
    writable.write(location, obj)
    result = writable.read(location)
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(result, obj)
    else:
        assert result == obj


def test_fits_images_hdus_boxes_and_tables(writable):
    ccd = CCDData(np.arange(12, dtype=np.float32).reshape(3, 4), unit="adu")
    writable.write(_location(writable, "calexp/c.fits", "FitsStorage"), ccd)
    image = writable.read(_location(writable, "calexp/c.fits[1]", "FitsStorage"))
    np.testing.assert_array_equal(image.data, ccd.data)
    cut = writable.read(_location(writable, "calexp/c.fits", "FitsStorage", pythonType=np.ndarray,
                                  additionalData={"llcX": 1, "llcY": 1, "width": 2, "height": 2}))
    np.testing.assert_array_equal(cut, ccd.data[1:3, 1:3])
    table = Table({"id": [1, 2], "flux": [0.5, 1.5]})
    writable.write(_location(writable, "src/s.fits", "FitsCatalogStorage"), table)
    back = writable.read(_location(writable, "src/s.fits", "FitsCatalogStorage"))
    assert list(back["id"]) == [1, 2] and list(back["flux"]) == [0.5, 1.5]


def test_several_paths_read_as_a_list(writable):
    writable.write(_location(writable, ["p/a.pickle", "p/b.pickle"]), 7)
    assert writable.read(_location(writable, ["p/a.pickle", "p/b.pickle"])) == [7, 7]


def test_a_failed_write_leaves_nothing_and_names_the_dataset(writable):
    with pytest.raises(UnwritableObjectError, match=r"thing.*'visit': 1") as info:
        writable.write(_location(writable, "bad/x.fits", "FitsStorage"), object())
    assert isinstance(info.value, TypeError)
    assert writable.listNames("bad") == []


def test_a_missing_object_is_dataset_not_found(storage):
    with pytest.raises(DatasetNotFoundError, match="missing.pickle"):
        storage.read(_location(storage, "missing.pickle"))


# -- derived: backups -----------------------------------------------------------------------------

def test_backup_keeps_every_version_newest_first(writable):
    assert writable.backup("v.txt") == []
    for text in (b"first", b"second", b"third"):
        writable.backup("v.txt")
        writable.writeBytes("v.txt", text)
    assert writable.backup("v.txt") == ["v.txt~1", "v.txt~2", "v.txt~3"]
    assert [writable.readBytes(n) for n in ("v.txt", "v.txt~1", "v.txt~2", "v.txt~3")] == [
        b"third", b"third", b"second", b"first"]


def test_write_with_backup(writable):
    for value in (1, 2, 3):
        writable.write(_location(writable, "b/obj.pickle"), value, doBackup=True)
    assert writable.read(_location(writable, "b/obj.pickle")) == 3
    assert writable.read(_location(writable, ["b/obj.pickle~1", "b/obj.pickle~2"])) == [2, 1]
    assert not writable.exists("b/obj.pickle~3")


# -- derived: repository cfgs and mappers ---------------------------------------------------------

def test_repository_cfg_round_trip_and_mapper_class(writable):
    cfg = RepositoryCfg(root=writable.root, mapper="butler.test.EmptyTestMapper", mapperArgs={"x": 1},
                        parents=[], policy=None)
    storage_class = Storage.storageClass(writable.root)
    assert storage_class.getRepositoryCfg(writable.root) is None
    Storage.putRepositoryCfg(cfg)
    assert writable.exists("repositoryCfg.yaml")
    assert writable.readBytes("repositoryCfg.yaml").startswith(b"!RepositoryCfg_v1")
    read = storage_class.getRepositoryCfg(writable.root)
    assert read == cfg and read.root == writable.root
    assert Storage.getMapperClass(writable.root) is EmptyTestMapper


def test_old_style_mapper_file(writable):
    writable.writeBytes("_mapper", b"butler.test.EmptyTestMapper\n")
    assert Storage.getMapperClass(writable.root) is EmptyTestMapper


def test_backup_of_a_name_with_glob_characters(writable):
    writable.writeBytes("odd/v[1].txt", b"one")
    writable.backup("odd/v[1].txt")
    assert writable.readBytes("odd/v[1].txt~1") == b"one"

