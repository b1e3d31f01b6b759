"""The service with provenance, read parameters and representations wired in; links out of a served root.

- A dataset's ETag is the SHA-256 its provenance record gives (the file is not
  re-hashed), else the hash of its bytes.
- The provenance endpoint answers the lineage (`Butler.provenance`, the shape
  of ``butler provenance --format json``) with no path of the server's disk.
- ``get(..., parameters={"bbox": ...})`` of a remote 4k x 4k image fetches a
  few ranges of it; ``as_type`` converts what a remote input returns.
- A symbolic link leading out of every served root is served only as an
  ingested raw (a FITS file the mapper locates there): ``evil -> /etc/passwd``
  is a logged 404.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import httpx
import numpy as np
import pytest
from astropy.nddata import CCDData

from butler import Butler, RepositoryArgs
from butler.provenance.lineage import read_lineage
from butler.service.api import content_digest
from butler.storage import Storage, http as http_storage
from butler.test import MapperForTestWriting, TestObject

from conftest import run_cli, run_demo, tree_fingerprint

SRC = {"visit": 101, "detector": 0}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    repos = run_demo(tmp_path_factory)
    before = tree_fingerprint(repos["dir"])
    yield repos
    assert tree_fingerprint(repos["dir"]) == before, "a served repository was changed"


@pytest.fixture(scope="module")
def server(demo, module_server):
    return module_server([demo["input"], demo["v1"], demo["v2"]])


def api_get(server, path, dataId, **params):
    return httpx.get(server.api(path), params={"dataId": json.dumps(dataId), **params})


# -- 1. ETag: the recorded digest ------------------------------------------------------------------------


def test_the_digest_of_a_recorded_file_is_its_record_not_a_rehash(tmp_path):
    root = str(tmp_path / "repo")
    Butler(outputs=RepositoryArgs(root=root, mapper=MapperForTestWriting)).put(TestObject("x" * 100), "foo", n=1)
    storage = Storage.makeFromURI(root, create=False)
    path = "filename_n1.txt"
    recorded = read_lineage(storage, path).sha256
    full = os.path.join(root, path)
    with open(full, "rb") as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == recorded
    info = os.stat(full)
    with open(full, "r+b") as stream:  # changed in place behind the butler's back, size and mtime kept
        stream.write(b"\0" * 8)
    os.utime(full, ns=(info.st_atime_ns, info.st_mtime_ns))
    with open(full, "rb") as stream:
        changed = hashlib.sha256(stream.read()).hexdigest()
        assert changed != recorded
        assert content_digest(stream, storage, path) == recorded  # the record answered: nothing was hashed
    os.utime(full, (info.st_atime + 3600, info.st_mtime + 3600))  # now newer than its record
    with open(full, "rb") as stream:
        assert content_digest(stream, storage, path) == changed
    unrecorded = tmp_path / "plain.bin"
    unrecorded.write_bytes(b"no record of me")
    with open(unrecorded, "rb") as stream:
        assert content_digest(stream, Storage.makeFromURI(str(tmp_path), create=False), "plain.bin") == \
            hashlib.sha256(b"no record of me").hexdigest()


def test_etag_of_dataset_bytes_is_the_recorded_digest_else_the_hash(server, demo):
    local = Butler(inputs=demo["v2"])
    recorded = local.provenance("src", SRC).sha256
    response = api_get(server, "/repositories/v2/datasets/src", SRC)
    assert response.status_code == 200 and response.headers["etag"] == f'"{recorded}"'
    assert hashlib.sha256(response.content).hexdigest() == recorded
    raw = api_get(server, "/repositories/input/datasets/raw", SRC)  # the demo's raws have no record
    assert raw.headers["etag"] == f'"{hashlib.sha256(raw.content).hexdigest()}"'


# -- 2. provenance over the wire -----------------------------------------------------------------------


def _shape(data):
    """The keys of nested records and inputs (values left out): what two renderings must share."""
    if isinstance(data, dict):
        return {key: _shape(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_shape(item) for item in data if isinstance(item, dict)]
    return None


def test_provenance_endpoint_answers_the_lineage_as_the_command_does(server, demo):
    answer = api_get(server, "/repositories/v2/datasets/src/provenance", SRC)
    assert answer.status_code == 200
    lineage = answer.json()["lineage"]
    result = run_cli("provenance", demo["v2"], "src", "visit=101", "detector=0", "--format", "json")
    assert result.exit_code == 0, result.stderr
    command = json.loads(result.stdout)
    assert _shape(lineage) == _shape(command)
    assert lineage["config"] == command["config"] and lineage["config"]  # the demo's settings
    assert lineage["sha256"] == command["sha256"] == answer.json()["digest"]
    assert [(i["path"], i["sha256"], i["uuid"]) for i in lineage["inputs"]] == \
        [(i["path"], i["sha256"], i["uuid"]) for i in command["inputs"]]
    assert lineage["run"]["uuid"] == command["run"]["uuid"] and lineage["run"]["user"] == command["run"]["user"]
    assert lineage["repository"] == server.repo("v2")
    assert {i["repository"] for i in lineage["inputs"]} <= {server.repo(n) for n in ("input", "v1", "v2")}
    assert demo["dir"] not in answer.text and "/tmp/" not in answer.text  # no path of the server's disk
    one = api_get(server, "/repositories/v2/datasets/src/provenance", SRC, depth="1").json()["lineage"]
    assert all(item["record"] is None for item in one["inputs"]) and one["inputs"]


def test_provenance_of_a_file_without_record_and_of_no_dataset(server):
    raw = api_get(server, "/repositories/input/datasets/raw/provenance", SRC).json()
    assert raw["lineage"] is None and len(raw["digest"]) == 64
    missing = api_get(server, "/repositories/v2/datasets/src/provenance", {"visit": 999, "detector": 0})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NoResults"


# -- 3. remote cut-outs and representations -------------------------------------------------------------


def _served_bytes(monkeypatch):
    """A list whose first item counts the bytes every http storage request receives from here on."""
    sent = [0]
    request = http_storage.HttpClient.request

    def counting(self, *args, **kwargs):
        response = request(self, *args, **kwargs)
        sent[0] += len(response.content)
        return response

    monkeypatch.setattr(http_storage.HttpClient, "request", counting)
    return sent


def test_a_remote_cut_out_through_parameters_reads_a_few_ranges(demo, butler_server, tmp_path, monkeypatch):
    big = str(tmp_path / "big")
    pixels = np.random.default_rng(3).normal(1000.0, 10.0, (4096, 4096)).astype(np.float32)
    Butler(inputs=demo["input"], outputs=big).put(CCDData(pixels, unit="adu"), "postISRCCD", **SRC)
    size = os.path.getsize(Butler(inputs=big).getUri("postISRCCD", **SRC))
    server = butler_server([big])
    remote, local = Butler(inputs=server.repo("big")), Butler(inputs=big)
    box = {"bbox": (2000, 1000, 100, 50)}
    sent = _served_bytes(monkeypatch)
    cut = remote.get("postISRCCD", SRC, parameters=box)
    assert 0 < sent[0] < 0.05 * size
    here = local.get("postISRCCD", SRC, parameters=box)
    assert cut.data.shape == (50, 100)
    np.testing.assert_array_equal(cut.data, here.data)
    np.testing.assert_array_equal(cut.data, pixels[1000:1050, 2000:2100])
    array = remote.get("postISRCCD", SRC, parameters=box, as_type="numpy")
    assert type(array) is np.ndarray
    np.testing.assert_array_equal(array, here.data)


def test_as_type_over_a_remote_table(server, demo):
    remote = Butler(inputs=server.repo("v2")).get("src", SRC, as_type="pandas")
    local = Butler(inputs=demo["v2"]).get("src", SRC, as_type="pandas")
    assert type(remote).__name__ == "DataFrame" and remote.equals(local)


# -- 4. links out of the served roots ----------------------------------------------------------------------

RAW = "raw/v0101/raw_v0101_d00.fits"
FAKE_RAW = "raw/v0101/raw_v0101_d01.fits"


@pytest.fixture
def linked(demo, tmp_path):
    """A copy of the demo's input whose raw ``RAW`` is a link to its source (as ingest links), with links to
    ``/etc/passwd`` (``evil``, and in place of the raw ``FAKE_RAW``) and to ``/etc`` (``etc``)."""
    root = tmp_path / "linked"
    shutil.copytree(demo["input"], root)
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.move(root / RAW, sources / "raw-101-0.fits")
    (root / RAW).symlink_to(sources / "raw-101-0.fits")
    (root / "evil").symlink_to("/etc/passwd")
    (root / "etc").symlink_to("/etc")
    (root / FAKE_RAW).unlink()
    (root / FAKE_RAW).symlink_to("/etc/passwd")
    return root


def test_a_link_out_of_the_served_roots_is_refused_unless_an_ingested_raw(linked, demo, butler_server):
    server = butler_server([linked])
    with open("/etc/passwd", "rb") as stream:
        secret = stream.read(64)
    for path in ("evil", "etc/passwd", FAKE_RAW):
        response = httpx.get(server.api(f"/repositories/linked/files/{path}"))
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "DatasetNotFoundError" and secret not in response.content
        assert str(linked) not in response.text
    assert httpx.get(server.api("/repositories/linked/exists"), params={"path": "etc/passwd"}).json() == \
        {"exists": False}
    assert httpx.get(server.api("/repositories/linked/list"), params={"prefix": "etc"}).json() == {"names": []}
    assert httpx.get(server.api("/repositories/linked/exists"), params={"path": RAW}).json() == {"exists": True}
    page = httpx.get(server.url + "/repositories/linked/datasets/raw?visit=101&detector=1")
    assert page.status_code == 404 and secret not in page.content
    log = server.log.read_text()
    assert "refused evil" in log and "refused etc/passwd" in log and "/etc/passwd" in log
    served = httpx.get(server.api(f"/repositories/linked/files/{RAW}"))
    with open(linked / RAW, "rb") as stream:
        assert served.status_code == 200 and served.content == stream.read()
    remote = Butler(inputs=server.repo("linked")).get("raw", SRC)
    np.testing.assert_array_equal(remote.data, Butler(inputs=str(linked)).get("raw", SRC).data)
    ranged = httpx.get(server.api(f"/repositories/linked/files/{RAW}"), headers={"Range": "bytes=0-8"})
    assert ranged.status_code == 206 and ranged.content == b"SIMPLE  ="
