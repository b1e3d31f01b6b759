"""Tests of butler.storage: the scheme table, PosixStorage search/read/write, cfgs and mappers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.nddata import CCDData

from butler.errors import DatasetNotFoundError, RepositoryError, UnknownStorageError, UnsafePathError
from butler.location import ButlerLocation
from butler.storage import PosixStorage, Storage, StorageInterface
from butler.test import EmptyTestMapper, TestObject

from conftest import run_together

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning",
                                        "error::pytest.PytestUnraisableExceptionWarning")


def _location(storage, paths, storageName="PickleStorage", pythonType=None, additionalData=None):
    return ButlerLocation(pythonType, None, storageName, paths, {}, None, storage,
                          additionalData=additionalData)


@pytest.fixture
def repo(tmp_path):
    return PosixStorage(str(tmp_path / "repo"), create=True)


def _touch(path, text="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as stream:
        stream.write(text)


# -- the scheme table ---------------------------------------------------------------------------


def test_make_from_uri_plain_path_and_file_uri(tmp_path):
    plain = Storage.makeFromURI(str(tmp_path / "a"))
    assert isinstance(plain, PosixStorage) and isinstance(plain, StorageInterface)
    assert plain.root == str(tmp_path / "a") and os.path.isdir(plain.root)
    uri = Storage.makeFromURI("file://" + str(tmp_path / "b"))
    assert isinstance(uri, PosixStorage) and uri.root == str(tmp_path / "b")


def test_unknown_scheme_raises(tmp_path):
    with pytest.raises(UnknownStorageError, match="nosuch"):
        Storage.makeFromURI("nosuch://bucket/repo")


def test_register_storage_class(tmp_path, monkeypatch):
    monkeypatch.setattr(Storage, "_storages", dict(Storage._storages))

    class LocalAlias(PosixStorage):
        def __init__(self, uri, create):
            super().__init__(str(tmp_path / uri[len("alias://"):]), create)

    Storage.registerStorageClass("alias", LocalAlias)
    storage = Storage.makeFromURI("alias://x")
    assert isinstance(storage, LocalAlias) and storage.root == str(tmp_path / "x")
    with pytest.raises(ValueError, match="'alias' is registered already.*clobber"):
        Storage.registerStorageClass("alias", PosixStorage)
    assert Storage.storageClass("alias://x") is LocalAlias
    Storage.registerStorageClass("alias", "butler.storage.posix.PosixStorage", clobber=True)
    assert Storage.storageClass("alias://x") is PosixStorage


def test_unknown_scheme_names_it_and_the_known_ones_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownStorageError, match=r"'foo'.*known schemes: '', 'file', 'http', 'https', 'mem'"):
        Storage.makeFromURI("foo://x")
    with pytest.raises(UnknownStorageError, match=r"pip install 'butler\[gcs\]'"):
        Storage.makeFromURI("gs://bucket/x")
    assert os.listdir(tmp_path) == []


def test_missing_root_without_create(tmp_path):
    with pytest.raises(RepositoryError):
        PosixStorage(str(tmp_path / "missing"), create=False)
    assert not (tmp_path / "missing").exists()
    assert Storage.storageExists(str(tmp_path)) and not Storage.storageExists(str(tmp_path / "missing"))


# -- paths --------------------------------------------------------------------------------------


def test_relative_and_absolute_paths():
    assert PosixStorage.relativePath("/x/a", "/x/b") == "../b"
    assert PosixStorage.relativePath("x/a", "x/b") == "../b"
    assert Storage.relativePath("/x/a", "/x/a/c") == "c"
    assert PosixStorage.absolutePath("/x/a", "../b") == "/x/b"
    assert Storage.absolutePath("/x/a", "/y") == "/y"


def test_absolute_path_of_a_relative_root_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert PosixStorage.absolutePath("x/a", "../b") == str(tmp_path / "x" / "b")
    assert Storage.absolutePath("file://x/a", "b") == str(tmp_path / "x" / "a" / "b")
    assert Storage.absolutePath("mem://r/a", "../b") == "mem://r/b"
    assert Storage.relativePath("mem://r/a", "mem://r/b/c") == "../b/c"


def test_get_parent_symlink_path(tmp_path):
    parent = tmp_path / "parent"
    child = tmp_path / "child"
    parent.mkdir()
    child.mkdir()
    assert PosixStorage.getParentSymlinkPath(str(child)) is None
    (child / "_parent").symlink_to("../parent")
    assert PosixStorage.getParentSymlinkPath(str(child)) == "../parent"


def test_get_local_file(repo):
    _touch(os.path.join(repo.root, "a", "f.txt"), "hello")
    with repo.getLocalFile("a/f.txt") as stream:
        assert stream.read() == "hello"
    assert repo.getLocalFile("a/missing.txt") is None
    assert repo.locationWithRoot("a/f.txt") == os.path.join(repo.root, "a", "f.txt")


def test_search_relative_absolute_and_hdu(repo):
    _touch(os.path.join(repo.root, "raw", "a.fits"))
    assert PosixStorage.search(repo.root, "raw/a.fits") == ["raw/a.fits"]
    assert PosixStorage.search(repo.root, "raw/a.fits[3]") == ["raw/a.fits[3]"]
    absolute = os.path.join(repo.root, "raw", "a.fits")
    assert PosixStorage.search(repo.root, absolute + "[1]") == [absolute + "[1]"]
    assert PosixStorage.search(repo.root, "raw/missing.fits") is None
    assert repo.instanceSearch("raw/*.fits") == ["raw/a.fits"]
    assert Storage.search(repo.root, "raw/a.fits") == ["raw/a.fits"]
    assert repo.exists("raw/a.fits[5]") and not repo.exists("raw/b.fits")


def test_search_through_symlinked_root(tmp_path):
    real = tmp_path / "real"
    _touch(str(real / "f.txt"))
    (tmp_path / "alias").symlink_to(real)
    assert PosixStorage.search(str(tmp_path / "alias"), str(real / "f.txt")) == [
        os.path.join(str(tmp_path / "alias"), "f.txt")]


def test_search_parents(tmp_path):
    grand, parent, child = (tmp_path / n for n in ("grand", "parent", "child"))
    _touch(str(grand / "foo.txt"))
    _touch(str(parent / "bar.txt"))
    child.mkdir()
    (parent / "_parent").symlink_to(grand)
    (child / "_parent").symlink_to(parent)
    assert PosixStorage.search(str(child), "foo.txt") is None
    assert PosixStorage.search(str(child), "foo.txt", searchParents=True) == ["_parent/_parent/foo.txt"]
    assert PosixStorage.search(str(child), "bar.txt[1]", searchParents=True) == ["_parent/bar.txt[1]"]
    assert PosixStorage.search(str(child), "baz.txt", searchParents=True) is None


# -- read / write -------------------------------------------------------------------------------


def test_write_and_read_pickle(repo):
    obj = TestObject({"a": 1})
    repo.write(_location(repo, "deep/dir/obj.pickle"), obj)
    assert repo.read(_location(repo, "deep/dir/obj.pickle")) == obj
    assert os.listdir(os.path.join(repo.root, "deep", "dir")) == ["obj.pickle"]


def test_several_locations_give_a_list(repo):
    repo.write(_location(repo, ["a.pickle", "b.pickle"]), [1, 2])
    assert repo.read(_location(repo, ["a.pickle", "b.pickle"])) == [[1, 2], [1, 2]]


def test_fits_write_and_hdu_read(repo):
    ccd = CCDData(np.arange(12, dtype=np.float32).reshape(3, 4), unit="adu")
    repo.write(_location(repo, "calexp/c.fits", "FitsStorage"), ccd)
    image = repo.read(_location(repo, "calexp/c.fits[1]", "FitsStorage"))
    np.testing.assert_array_equal(image.data, ccd.data)
    cut = repo.read(_location(repo, "calexp/c.fits", "FitsStorage", pythonType=np.ndarray,
                              additionalData={"llcX": 1, "llcY": 1, "width": 2, "height": 2}))
    np.testing.assert_array_equal(cut, ccd.data[1:3, 1:3])


def test_read_missing_raises(repo):
    with pytest.raises(DatasetNotFoundError, match="missing.pickle"):
        repo.read(_location(repo, "missing.pickle"))


def test_unknown_storage_name(repo):
    with pytest.raises(UnknownStorageError, match="BoostStorage"):
        repo.write(_location(repo, "x.boost", "BoostStorage"), 1)
    assert os.listdir(repo.root) == []


def test_write_outside_root_is_refused(tmp_path, repo):
    with pytest.raises(UnsafePathError):
        repo.write(_location(repo, "../escaped.pickle"), 1)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(repo.root, "link"))
    with pytest.raises(UnsafePathError):
        repo.write(_location(repo, "link/escaped.pickle"), 1)
    assert sorted(os.listdir(tmp_path)) == ["outside", "repo"]
    assert os.listdir(outside) == [] and os.listdir(repo.root) == ["link"]


def test_failed_formatter_write_leaves_nothing(repo):
    with pytest.raises(TypeError):
        repo.write(_location(repo, "sub/bad.fits", "FitsStorage"), object())
    assert os.listdir(os.path.join(repo.root, "sub")) == []


def test_copy_file(repo):
    _touch(os.path.join(repo.root, "a.txt"), "content")
    repo.copyFile("a.txt", "copies/b.txt")
    with open(os.path.join(repo.root, "copies", "b.txt")) as stream:
        assert stream.read() == "content"
    with pytest.raises(DatasetNotFoundError):
        repo.copyFile("nope.txt", "c.txt")
    with pytest.raises(UnsafePathError):
        repo.copyFile("a.txt", "../c.txt")


# -- mapper and repository cfg -------------------------------------------------------------------


def test_mapper_class_from_mapper_file_through_parents(tmp_path):
    parent, child = tmp_path / "parent", tmp_path / "child"
    _touch(str(parent / "_mapper"), "butler.test.EmptyTestMapper\n")
    child.mkdir()
    (child / "_parent").symlink_to(parent)
    assert PosixStorage.getMapperClass(str(parent)) is EmptyTestMapper
    assert Storage.getMapperClass(str(child)) is EmptyTestMapper
    assert PosixStorage.getMapperClass(str(tmp_path)) is None


def test_mapper_class_that_cannot_be_imported_names_the_file(tmp_path):
    _touch(str(tmp_path / "_mapper"), "no.such.module.Mapper\n")
    with pytest.raises(ImportError, match="_mapper"):
        PosixStorage.getMapperClass(str(tmp_path))


def test_parent_link_cycle_ends(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "_parent").symlink_to(tmp_path / "a")
    assert PosixStorage.getMapperClass(str(tmp_path / "a")) is None


def test_repository_cfg_roundtrip_and_cache(tmp_path):
    cfgmod = pytest.importorskip("butler.cfg")
    root = str(tmp_path / "repo")
    cfg = cfgmod.RepositoryCfg(root=root, mapper="butler.test.EmptyTestMapper", mapperArgs=None,
                               parents=[], policy=None)
    assert PosixStorage.getRepositoryCfg(root) is None
    Storage.putRepositoryCfg(cfg)
    assert os.path.exists(os.path.join(root, "repositoryCfg.yaml"))
    assert PosixStorage.getRepositoryCfg(root) == cfg
    assert Storage.getMapperClass(root) is EmptyTestMapper
    storage = Storage()
    first = storage.getRepositoryCfg(root)
    assert first == cfg and storage.getRepositoryCfg(root) is first
    assert storage.repositoryCfgs == {root: first}


def _put_cfg(root: str) -> None:
    from butler.cfg import RepositoryCfg

    for _ in range(10):
        Storage.putRepositoryCfg(RepositoryCfg(root=root, mapper="butler.test.EmptyTestMapper"), root)


def test_concurrent_cfg_writers_all_succeed(tmp_path):
    cfgmod = pytest.importorskip("butler.cfg")
    root = str(tmp_path / "repo")
    assert run_together(_put_cfg, [(root,)] * 3, timeout=20) == [0, 0, 0]
    expected = cfgmod.RepositoryCfg(root=root, mapper="butler.test.EmptyTestMapper")
    assert cfgmod.RepositoryCfg.read(root) == expected
    assert os.listdir(root) == ["repositoryCfg.yaml"]


def test_formatter_errors_name_the_dataset_type_data_id_and_repository(repo):
    from butler.errors import FormatterError, UnwritableObjectError

    location = ButlerLocation(None, None, "FitsStorage", "sub/bad.fits", {"visit": 7}, None, repo,
                              datasetType="calexp")
    with pytest.raises(UnwritableObjectError, match=r"calexp.*'visit': 7.*" + repr(repo.root)[1:-1]) as info:
        repo.write(location, object())
    assert isinstance(info.value, TypeError)
    repo.write(location, np.zeros((2, 2)))
    boxed = ButlerLocation("ndarray", None, "FitsStorage", "sub/bad.fits", {"visit": 7}, None, repo,
                           datasetType="calexp_sub",
                           additionalData={"llcX": 0, "llcY": 0, "width": 5, "height": 5})
    with pytest.raises(FormatterError, match=r"not inside.*calexp_sub.*'visit': 7") as info:
        repo.read(boxed)
    assert isinstance(info.value, ValueError)
