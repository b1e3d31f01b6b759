"""The repository owns its storage and registries and hands them to its mapper (issue #11, item 4).

A camera mapper built by a Butler reads through the repository's storage
object, finds calibrations through the repository's ancestry (on any storage),
reads headers through the storage, and returns complete locations; a mapper
constructed alone gets the same view of its root from `open_repository_view`.
"""

from __future__ import annotations

import gzip
import io
import logging
import os

import pytest
from astropy.io import fits

from butler import Butler, RepositoryArgs
from butler.errors import RepositoryError
from butler.location import ButlerLocation
from butler.mapper import Mapper
from butler.repository import open_repository_view
from butler.storage import mem
from mappers.lsst import LatissMapper
from mappers.test import TestMapper

TEST_MAPPER = "lsst.obs.test.testMapper.TestMapper"
LATISS_BIAS_ID = {"expId": 3018092000065, "detector": 0}
LATISS_BIAS = "bias/2018-09-21/bias-det000_2018-09-21.fits"


@pytest.fixture(autouse=True)
def in_memory():
    mem.clear()
    yield
    mem.clear()


@pytest.fixture
def latiss(shared_data_untouched):
    return shared_data_untouched / "obs_lsst" / "data" / "input" / "latiss"


def rerun_chain(base, roots):
    """Chain each root to the one before it (the first to ``base``); return the Butler of the last link."""
    parent = str(base)
    for root in roots[:-1]:
        Butler(inputs=parent, outputs=root)
        parent = root
    return Butler(inputs=parent, outputs=RepositoryArgs(root=roots[-1], mode="rw"))


def test_a_butler_built_mapper_uses_the_repository_storage_and_makes_complete_locations(tmp_path,
                                                                                      obs_test_input):
    butler = Butler(inputs=str(obs_test_input), outputs=str(tmp_path / "out"))
    out, = butler.outputRepositories()
    source = butler.repositories()[0]
    for repo in (out, source):
        assert repo.mapper.repository is repo
        assert repo.mapper.rootStorage is repo.storage
    location = source.map("raw", {"visit": 1})
    assert location.storage is source.storage and location.repository is source
    assert location.datasetType == "raw"
    written = out.map("processCcd_metadata", {"visit": 1, "filter": "g"}, write=True)
    assert written.storage is out.storage and written.repository is out


class OneLocationMapper(Mapper):
    """Hands out one location object it keeps, without repository or storage."""

    def __init__(self, root, **kwargs):
        self.location = ButlerLocation(dict, None, "PickleStorage", "one.pickle", {}, self, None)

    def map_one(self, dataId, write):
        return self.location


def test_the_repository_completes_a_copy_and_never_changes_the_mapper_location(tmp_path):
    butler = Butler(outputs=RepositoryArgs(root=str(tmp_path), mapper=OneLocationMapper, mode="rw"))
    repo, = butler.outputRepositories()
    location = repo.map("one", {}, write=True)
    kept = repo.mapper.location
    assert location is not kept
    assert (location.repository, location.storage, location.datasetType) == (repo, repo.storage, "one")
    assert (kept.repository, kept.storage, kept.datasetType) == (None, None, None)
    butler.put({"a": 1}, "one", {})
    assert butler.get("one", {}) == {"a": 1}


def test_ancestry_is_depth_first_each_once(tmp_path):
    roots = {name: str(tmp_path / name) for name in ("a", "b", "c", "d")}
    Butler(outputs=RepositoryArgs(root=roots["a"], mapper=OneLocationMapper))
    Butler(inputs=roots["a"], outputs=roots["b"])
    Butler(inputs=roots["a"], outputs=roots["c"])
    butler = Butler(inputs=[roots["b"], roots["c"]], outputs=roots["d"])
    out, = butler.outputRepositories()
    assert [repo.root for repo in out.ancestry()] == [roots[name] for name in "dbac"]
    assert out.ancestry()[2] is butler.repositories()[1]  # the live repositories, not copies


def test_calibrations_found_through_a_three_deep_rerun_chain_on_mem(latiss):
    # The reruns live in memory: only the repositories' ancestry (not a walk of directories) reaches the base.
    butler = rerun_chain(latiss, ["mem://seam/r1", "mem://seam/r2", "mem://seam/r3"])
    out, = butler.outputRepositories()
    assert [repo.root for repo in out.ancestry()] == ["mem://seam/r3", "mem://seam/r2", "mem://seam/r1",
                                                      str(latiss)]
    assert out.mapper.calibRoot == str(latiss / "CALIB")
    assert out.mapper.calibStorage.root == str(latiss / "CALIB")
    assert butler.getUri("bias", LATISS_BIAS_ID) == str(latiss / "CALIB" / LATISS_BIAS)
    assert butler.get("bias", LATISS_BIAS_ID).shape == (4000, 4072)


def test_calibrations_found_through_a_three_deep_rerun_chain_on_disk(tmp_path, latiss):
    butler = rerun_chain(latiss, [str(tmp_path / f"r{k}") for k in (1, 2, 3)])
    out, = butler.outputRepositories()
    assert len(out.ancestry()) == 4
    assert out.mapper.calibRoot == str(latiss / "CALIB")
    assert butler.get("bias", LATISS_BIAS_ID).shape == (4000, 4072)


def test_the_calibration_search_goes_past_parents_recorded_on_another_machine(tmp_path, latiss, caplog):
    calib = latiss / "CALIB"  # its cfg records a parent under /Users/timj/..., absent here
    butler = Butler(inputs=str(calib), outputs=str(tmp_path / "out"))
    out, = butler.outputRepositories()
    with caplog.at_level(logging.DEBUG, logger="butler.repository"):
        assert [repo.root for repo in out.ancestry()] == [str(tmp_path / "out"), str(calib)]
    assert "/Users/timj/" in caplog.text
    assert out.mapper.calibRoot == str(calib)
    assert butler.get("bias", calibDate="2018-09-21", detector=0).shape == (4000, 4072)


def test_a_header_bypass_reads_through_the_storage(obs_test_input):
    butler = Butler(inputs=str(obs_test_input), outputs=RepositoryArgs(root="mem://seam/md", mode="rw"))
    out, = butler.outputRepositories()
    relpath = out.map("raw", {"visit": 1}, write=True).locationList[0]
    with fits.open(os.path.join(obs_test_input, relpath)) as hdus:
        hdus[0].header["SEAMTEST"] = "from memory"
        buffer = io.BytesIO()
        hdus.writeto(buffer)
    out.storage.writeBytes(relpath, gzip.compress(buffer.getvalue()))
    header = butler.get("raw_md", visit=1)  # the file exists only in memory: no local path reaches it
    assert header["SEAMTEST"] == "from memory"
    assert butler.get("raw_filter", visit=1).physical == "g"
    assert butler.get("raw_md", visit=2).get("SEAMTEST") is None  # not copied: read from the input on disk


def test_test_mapper_put_get_in_mem_output_chained_to_a_file_input(obs_test_input):
    metadata = {"visit": 1, "quality": "good"}
    Butler(inputs=str(obs_test_input), outputs="mem://seam/out").put(metadata, "processCcd_metadata", visit=1)
    butler = Butler(inputs="mem://seam/out")
    # the filter is completed from the file input's registry
    assert butler.get("processCcd_metadata", visit=1) == metadata
    assert butler.getUri("processCcd_metadata", visit=1) == "mem://seam/out/processCcd_metadata/v1_fg.yaml"


def test_standalone_mappers_ask_the_core_for_their_view(tmp_path, obs_test_input, latiss):
    mapper = TestMapper(root=str(obs_test_input))
    assert mapper.repository.root == str(obs_test_input) and mapper.rootStorage is mapper.repository.storage
    location = mapper.map("raw", {"visit": 1})
    assert location.storage is mapper.rootStorage and location.repository is mapper.repository
    assert mapper.rootStorage.exists(location.locationList[0])
    lsst = LatissMapper(root=str(latiss), calibRoot="CALIB")
    assert lsst.calibRoot == str(latiss / "CALIB")
    assert lsst.map("bias", LATISS_BIAS_ID).getLocationsWithRoot() == [str(latiss / "CALIB" / LATISS_BIAS)]
    assert LatissMapper(root=str(latiss)).calibRoot == str(latiss / "CALIB")  # searched in its own root
    plain = TestMapper(root=str(tmp_path))  # a directory that is no repository yet: a view without ancestors
    assert plain.repository.ancestry() == [plain.repository] and plain.calibRoot == str(tmp_path)
    with pytest.raises(RepositoryError, match="missing"):
        TestMapper(root=str(tmp_path / "missing"))


def test_a_standalone_view_has_the_ancestry_of_the_root(tmp_path, latiss):
    rerun_chain(latiss, [str(tmp_path / "r1"), str(tmp_path / "r2")])
    view = open_repository_view(str(tmp_path / "r2"))
    roots = [str(tmp_path / "r2"), str(tmp_path / "r1"), str(latiss)]
    assert [repo.root for repo in view.ancestry()] == roots
    mapper = LatissMapper(root=str(tmp_path / "r2"))
    assert mapper.calibRoot == str(latiss / "CALIB")
    assert os.path.isdir(mapper.calibRoot)
