"""Issue #12: a read through a rerun chain maps once per mapper promise and only probes the other reruns.

Repositories whose mappers make the same `Mapper.sharedReadPath` promise (one
camera class, one composed policy, one registry) map a data ID to the same
relative path, so the search maps it in the first one and asks each other one
only whether the file is there; the one holding it answers with the first
location, moved to its own repository, mapper and storage. A rerun with a registry of its own, a type
the class maps itself, calibrations and types with a bypass are mapped by
each repository's own mapper, as before. Nothing is remembered between calls.
"""

from __future__ import annotations

import gzip
import os
import sqlite3

import attrs
import pytest
from test_speed_chain import DATA_ID, _chain, _image, _toy_chain

from butler import Butler, RepositoryArgs
from butler.dataId import merge_data_id
from butler.errors import NoResults, UnsafePathError
from butler.storage import Storage
from butler.test import MapperForTestWriting, TestObject
from mappers.test import TestMapper


def _count_maps(butler: Butler) -> dict[str, int]:
    """Count, per repository root, the calls of its mapper's ``map`` (the instance's own attribute wraps it)."""
    counts: dict[str, int] = {}
    for repo in butler.repositories():
        mapper = repo.mapper
        counts[repo.root] = 0

        def counted(*args, _map=mapper.map, _root=repo.root, **kwargs):
            counts[_root] += 1
            return _map(*args, **kwargs)

        mapper.map = counted
    return counts


def test_a_chain_maps_in_the_first_rerun_only_and_probes_the_others(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path)
    reader = Butler(inputs=roots[-1])
    counts = _count_maps(reader)
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 1.0
    assert {root: n for root, n in counts.items() if n} == {roots[-1]: 1}
    for root in counts:
        counts[root] = 0
    assert reader.datasetExists("calexp", **DATA_ID)
    assert reader.getUri("calexp", **DATA_ID) == os.path.join(roots[0], "calexp/calexp_v1_fg.fits")
    assert {root: n for root, n in counts.items() if n} == {roots[-1]: 2}


def test_the_location_found_below_is_the_holding_repository_s_own(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path)
    reader = Butler(inputs=roots[-1])
    bottom = next(repo for repo in reader.repositories() if repo.root == roots[0])
    found = reader._locate("calexp", merge_data_id(DATA_ID, {}), write=False)
    location = found.location
    assert found.repository is bottom and location.repository is bottom
    assert location.mapper is bottom.mapper and location.storage is bottom.storage
    assert location.found is True and location.locationList == ["calexp/calexp_v1_fg.fits"]
    mapped = bottom.map("calexp", DATA_ID)  # what the bottom's own mapper says, field by field
    assert attrs.asdict(location, recurse=False) == attrs.asdict(mapped, recurse=False)


def test_a_compressed_file_below_is_found_under_its_own_name(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path, depth=3)
    bottom_file = os.path.join(roots[0], "calexp/calexp_v1_fg.fits")
    with open(bottom_file, "rb") as plain, gzip.open(bottom_file + ".gz", "wb") as packed:
        packed.write(plain.read())
    os.remove(bottom_file)
    reader = Butler(inputs=roots[-1])
    assert reader.getUri("calexp", **DATA_ID) == bottom_file + ".gz"
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 1.0


def test_every_rerun_is_probed_afresh_on_each_call(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path)
    reader = Butler(inputs=roots[-1])
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 1.0
    Butler(inputs=roots[2], outputs=roots[3]).put(_image(3.0), "calexp", **DATA_ID)
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 3.0
    os.remove(os.path.join(roots[3], "calexp/calexp_v1_fg.fits"))
    os.remove(os.path.join(roots[0], "calexp/calexp_v1_fg.fits"))
    assert not reader.datasetExists("calexp", **DATA_ID)
    with pytest.raises(NoResults) as info:
        reader.get("calexp", **DATA_ID)
    assert all(root in str(info.value) for root in roots)  # every rerun is named as searched


def _own_registry(root: str, visit: int, filter_: str) -> None:
    """Give a rerun a registry of its own, in which ``visit`` was taken in ``filter_``."""
    conn = sqlite3.connect(os.path.join(root, "registry.sqlite3"))
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, visit INT, filter TEXT, "
                 "taiObs TEXT, expTime DOUBLE)")
    conn.execute("CREATE TABLE raw_visit (visit INT, filter TEXT, taiObs TEXT, expTime DOUBLE, UNIQUE(visit))")
    conn.execute("INSERT INTO raw (visit, filter, taiObs, expTime) VALUES (?, ?, '2000-01-01T00:00:00', 1.0)",
                 (visit, filter_))
    conn.execute("INSERT INTO raw_visit SELECT visit, filter, taiObs, expTime FROM raw")
    conn.commit()
    conn.close()


def test_reruns_that_complete_a_data_id_from_different_registries_are_each_mapped(obs_test_input, tmp_path):
    # rerun1 (and the reruns above it, which use the nearest registry) say visit 1 was in filter r;
    # the bottom rerun and the camera input say g: the bottom's calexp must still be found
    roots = _chain(obs_test_input, tmp_path)
    _own_registry(roots[1], 1, "r")
    reader = Butler(inputs=roots[-1])
    assert reader.getUri("calexp", visit=1) == os.path.join(roots[0], "calexp/calexp_v1_fg.fits")
    assert reader.get("calexp", visit=1).data[0, 0] == 1.0
    Butler(inputs=roots[0], outputs=roots[1]).put(_image(5.0), "calexp", visit=1, filter="r")
    assert reader.get("calexp", visit=1).data[0, 0] == 5.0
    assert reader.getUri("calexp", visit=1) == os.path.join(roots[1], "calexp/calexp_v1_fr.fits")


class MapsItsOwnCalexp(TestMapper):
    """A camera class with its own ``map_calexp``: no promise for that type."""

    def map_calexp(self, dataId, write=False):
        return self.mappings["calexp"].map(self, dataId, write)


def test_only_types_mapped_by_their_mapping_in_the_repository_storage_are_promised(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path, depth=2)
    top, middle = (repo.mapper for repo in Butler(inputs=roots[-1]).repositories()[:2])
    key, compressed = top.sharedReadPath("calexp")
    assert compressed is True  # FITS reads .gz and .fz files
    assert key == middle.sharedReadPath("calexp")[0]  # one class, policy and registry (the input's)
    assert key != top.sharedReadPath("postISRCCD")[0]
    # a mapper made alone over a rerun scans its own files for a registry: another registry, another key
    assert TestMapper(root=roots[-1]).sharedReadPath("calexp")[0] != key
    assert top.sharedReadPath("no_such_type") is None
    assert MapsItsOwnCalexp(root=roots[-1]).sharedReadPath("calexp") is None
    calibrations = [name for name in ("bias", "flat", "dark") if name in top.mappings]
    assert calibrations and all(top.sharedReadPath(name) is None or
                                top.mappings[name].storageFor(False) is top.rootStorage
                                for name in calibrations)


def test_a_chain_of_toy_repositories_keeps_the_same_promise(tmp_path):
    roots = _toy_chain(tmp_path, depth=4)
    reader = Butler(inputs=roots[-1])
    counts = _count_maps(reader)
    assert reader.get("foo", visit=1) == TestObject("low")
    assert {root: n for root, n in counts.items() if n} == {roots[-1]: 1}
    Butler(inputs=roots[1], outputs=roots[2]).put(TestObject("middle"), "foo", visit=1)
    assert reader.get("foo", visit=1) == TestObject("middle")
    assert not reader.datasetExists("foo", visit=2)


def _probed_storage(root) -> Storage:
    """A storage holding ``calexp/a.fits``, ``calexp/b.fits.fz`` and ``top.fits.gz``."""
    (root / "calexp").mkdir()
    for name in ("calexp/a.fits", "calexp/b.fits.fz", "top.fits.gz"):
        (root / name).write_bytes(b"")
    return Storage.makeFromURI(str(root), create=False)


@pytest.mark.parametrize("likelyMissing", [False, True])
def test_a_probe_expecting_a_miss_gives_the_same_answers(tmp_path, likelyMissing):
    storage = _probed_storage(tmp_path)
    answers = {path: storage.probe(path, True, likelyMissing=likelyMissing)
               for path in ("calexp/a.fits[1]", "calexp/b.fits", "calexp/c.fits", "nodir/a.fits", "top.fits")}
    assert answers == {"calexp/a.fits[1]": ("calexp/a.fits[1]", True), "calexp/b.fits": ("calexp/b.fits.fz", True),
                       "calexp/c.fits": ("calexp/c.fits", False), "nodir/a.fits": ("nodir/a.fits", False),
                       "top.fits": ("top.fits.gz", True)}
    assert storage.probe("calexp/b.fits", False, likelyMissing=likelyMissing) == ("calexp/b.fits", False)


@pytest.mark.parametrize("compressed", [False, True])
def test_a_prober_answers_as_the_probe_and_looks_afresh(tmp_path, compressed):
    storage = _probed_storage(tmp_path)
    probe = storage.prober(compressed)
    paths = ("calexp/a.fits[1]", "calexp/b.fits", "calexp/c.fits", "nodir/a.fits", "top.fits")
    for path in paths:
        location, found = storage.probe(path, compressed, likelyMissing=True)
        assert probe(path) == (location if found else None)
    assert probe("calexp/c.fits") is None
    (tmp_path / "calexp" / "c.fits").write_bytes(b"")  # written after the prober was made
    assert probe("calexp/c.fits") == "calexp/c.fits"
    with pytest.raises(UnsafePathError):
        probe("../outside.fits")


class NamesFooItsOwnWay(MapperForTestWriting):
    """A toy subclass that maps ``foo`` itself: it promises nothing."""

    def map_foo(self, dataId, write):
        return super().map_foo(dataId, write)


def test_a_toy_subclass_mapping_foo_its_own_way_makes_no_promise(tmp_path):
    Butler(outputs=RepositoryArgs(root=str(tmp_path / "toy"), mapper=MapperForTestWriting))
    assert MapperForTestWriting(root=str(tmp_path / "toy")).sharedReadPath("foo") is not None
    assert NamesFooItsOwnWay(root=str(tmp_path / "toy")).sharedReadPath("foo") is None
    assert MapperForTestWriting(root=str(tmp_path / "toy")).sharedReadPath("bar") is None
