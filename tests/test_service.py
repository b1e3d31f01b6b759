"""The read-only service (`butler serve`, a real process) and remote inputs (``Butler(inputs="http://...")``).

The demo's repositories (input, v1, v2) are served by one server for the
module; they are fingerprinted before and compared after every test of the
module has run against them.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from astropy.io import fits
from service_server import served_scratch

from butler import Butler, DataId, RepositoryArgs
from butler.cfg import RepositoryCfg
from butler.errors import (
    AccessDenied,
    ButlerError,
    DataIdValueError,
    DatasetNotFoundError,
    NoResults,
    RegistryError,
    RegistrySchemaError,
    RepositoryModeError,
    StorageUnavailable,
    UnsafeDataIdValueError,
    UnsafePathError,
    UntrustedMapperError,
)
from butler.registry import SqliteRegistry
from butler.registry.http import HttpRegistry
from butler.storage import Storage
from butler.storage.http import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    HttpClient,
    HttpStorage,
    client_for,
    raise_remote_error,
)
from butler.test import MapperForTestWriting, TestObject

from conftest import assert_user_error, run_cli, run_demo, tree_fingerprint

VISITS = [(101, 0), (101, 1), (102, 0), (102, 1), (103, 0), (103, 1)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    repos = run_demo(tmp_path_factory)
    repos["notes"] = os.path.join(repos["dir"], "notes")  # file names made of data-ID text
    notes = Butler(outputs=RepositoryArgs(root=repos["notes"], mapper=MapperForTestWriting))
    for name in ("a", "b"):
        notes.put(TestObject(name), "foo", name=name)
    del notes
    gc.collect()  # every writer is finalized (its provenance folded) before the served trees are fingerprinted
    before = tree_fingerprint(repos["dir"])
    yield repos
    assert tree_fingerprint(repos["dir"]) == before, "a served repository was changed"


@pytest.fixture(scope="module")
def server(demo, module_server):
    return module_server([demo["input"], demo["v1"], demo["v2"], demo["notes"]])


@pytest.fixture(autouse=True)
def no_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)


def get(url, **params):
    with httpx.Client() as client:
        return client.get(url, params=params)


def data_id(**values):
    return {"dataId": json.dumps(values)}


# -- the API ----------------------------------------------------------------------------------------


def test_repositories_name_their_mapper_and_parents_as_urls(server):
    answer = get(server.api("/repositories")).json()["repositories"]
    by_name = {repo["name"]: repo for repo in answer}
    assert set(by_name) == {"input", "v1", "v2", "notes"}
    assert by_name["v1"]["mapper"] == "mappers.demo.DemoMapper"
    assert by_name["v1"]["parents"] == [server.repo("input")]
    one = get(server.api("/repositories/v2")).json()
    assert server.repo("input") in one["cfg"] and "/tmp" not in one["cfg"]  # no server path is shown


def test_dataset_types_query_and_exists(server):
    types = get(server.api("/repositories/v1/datasetTypes")).json()["datasetTypes"]
    assert set(types["src"]) >= {"visit", "detector"}
    answer = get(server.api("/repositories/v1/query"), datasetType="src", keys="visit,detector",
                 exists="true").json()
    assert [(d["visit"], d["detector"]) for d in answer["dataIds"]] == VISITS
    assert answer["exists"] == [True] * len(VISITS)
    restricted = get(server.api("/repositories/v1/query"), datasetType="src", keys="detector",
                     **data_id(visit=102)).json()
    assert restricted["dataIds"] == [{"visit": 102, "detector": 0}, {"visit": 102, "detector": 1}]
    assert restricted["links"][0]["bytes"].startswith("/api/v1/repositories/v1/datasets/src?dataId=")


def test_dataset_bytes_etag_length_range_and_head(server, demo):
    butler = Butler(inputs=demo["v1"])
    local = butler.getUri("postISRCCD", visit=101, detector=0)
    with open(local, "rb") as stream:
        content = stream.read()
    url = server.api("/repositories/v1/datasets/postISRCCD")
    params = data_id(visit=101, detector=0)
    with httpx.Client() as client:
        whole = client.get(url, params=params)
        assert whole.status_code == 200 and whole.content == content
        assert whole.headers["content-length"] == str(len(content))
        etag = whole.headers["etag"]
        part = client.get(url, params=params, headers={"Range": "bytes=100-2979"})
        assert part.status_code == 206 and part.content == content[100:2980]
        assert part.headers["content-range"] == f"bytes 100-2979/{len(content)}"
        assert client.get(url, params=params, headers={"Range": "bytes=-10"}).content == content[-10:]
        assert client.get(url, params=params, headers={"Range": f"bytes={len(content)}-"}).status_code == 416
        assert client.get(url, params=params, headers={"If-None-Match": etag}).status_code == 304
        head = client.head(url, params=params)
        assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag
        assert head.headers["content-length"] == str(len(content))


def test_header_is_the_stored_header_with_naxis(server, demo):
    cards = get(server.api("/repositories/v1/datasets/postISRCCD/header"), **data_id(visit=101, detector=0)).json()
    keywords = [card[0] for card in cards["cards"]]
    stored = fits.getheader(Butler(inputs=demo["v1"]).getUri("postISRCCD", visit=101, detector=0))
    assert keywords == list(stored.keys()) and keywords[:3] == ["SIMPLE", "BITPIX", "NAXIS"]
    assert [card[1] for card in cards["cards"]][keywords.index("EXPID")] == stored["EXPID"]


def test_openapi_and_docs(server):
    spec = get(server.api("/openapi.json")).json()
    assert spec["openapi"].startswith("3.") and "/api/v1/repositories/{name}/query" in spec["paths"]
    assert all(set(operations) == {"get"} for operations in spec["paths"].values())
    docs = get(server.api("/docs"))
    assert docs.status_code == 200 and "/api/v1/repositories/{name}/datasets/{datasetType}" in docs.text


# -- read-only, paths, data IDs ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/api/v1/repositories", "/api/v1/repositories/v1/files/repositoryCfg.yaml",
                                  "/", "/nothing/here"])
def test_every_other_method_is_405(server, method, path):
    with httpx.Client() as client:
        response = client.request(method, server.url + path, content=b"x")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"


def test_head_is_answered_on_get_routes(server):
    with httpx.Client() as client:
        for path in ("/api/v1/repositories", "/repositories/v1", "/"):
            response = client.head(server.url + path)
            assert response.status_code == 200 and response.content == b"", path


def test_serve_refuses_a_missing_root_and_an_empty_token_file(tmp_path, demo):
    assert_user_error(run_cli("serve", str(tmp_path / "nowhere")), "no such repository root")
    (tmp_path / "tokens").write_text("# nothing\n")
    assert_user_error(run_cli("serve", demo["v1"], "--token-file", str(tmp_path / "tokens")), "holds no token")


@pytest.mark.parametrize("value", ["../../v2/repositoryCfg.yaml", "a/b", "a\x00", ".."])
def test_unsafe_data_id_values_never_reach_a_path(server, value):
    response = get(server.api("/repositories/notes/datasets/foo"), **data_id(name=value))
    assert response.status_code == 400 and response.json()["error"]["type"] == "UnsafeDataIdValueError"
    with pytest.raises(UnsafeDataIdValueError, match="name"):
        Butler(inputs=server.repo("notes")).get("foo", name=value)
    assert Butler(inputs=server.repo("notes")).get("foo", name="a") == TestObject("a")
    with pytest.raises(DataIdValueError):  # an integer key refuses any text
        Butler(inputs=server.repo("v1")).get("src", visit=101, detector=value)


@pytest.mark.parametrize("path", ["%2E%2E/v2/repositoryCfg.yaml", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"])
def test_file_paths_outside_the_root_are_refused(server, path):
    response = get(server.api(f"/repositories/v1/files/{path}"))
    assert response.status_code == 400 and response.json()["error"]["type"] == "UnsafePathError"
    assert "/tmp" not in response.text and server.repo("v1") in response.text  # no server path is shown


def test_the_http_storage_refuses_writes_and_escapes(server):
    storage = Storage.makeFromURI(server.repo("v1"), create=False)
    assert isinstance(storage, HttpStorage)
    with pytest.raises(RepositoryModeError, match="read-only"):
        storage.writeBytes("x.txt", b"x")
    with pytest.raises(UnsafePathError):
        storage.readBytes("../v2/repositoryCfg.yaml")
    with pytest.raises(DatasetNotFoundError, match="nothing.txt"):
        storage.readBytes("nothing.txt")


# -- remote inputs ---------------------------------------------------------------------------------


def test_remote_input_answers_as_the_local_one(server, demo):
    remote, local = Butler(inputs=server.repo("v1")), Butler(inputs=demo["v1"])
    assert [r.root for r in remote.repositories()] == [server.repo("v1"), server.repo("input")]
    assert remote.queryMetadata("src", ["visit", "detector"]) == local.queryMetadata("src", ["visit", "detector"])
    for visit, detector in VISITS[:2]:
        np.testing.assert_array_equal(remote.get("postISRCCD", visit=visit, detector=detector).data,
                                      local.get("postISRCCD", visit=visit, detector=detector).data)
        assert list(remote.get("src", visit=visit, detector=detector)["id"]) == list(
            local.get("src", visit=visit, detector=detector)["id"])
    assert remote.datasetExists("src", visit=101, detector=0)
    assert not remote.datasetExists("src", visit=999, detector=0)


def test_no_results_names_the_dataset_and_the_remote_repositories(server):
    with pytest.raises(NoResults) as info:
        Butler(inputs=server.repo("v1")).get("src", visit=999, detector=0)
    message = str(info.value)
    assert "src" in message and "'visit': 999" in message and server.repo("v1") in message


def test_errors_cross_the_wire_as_their_own_class(server):
    client = client_for(server.url)
    with pytest.raises(NoResults) as info:
        client.request("/api/v1/repositories/v1/datasets/src", data_id(visit=999, detector=0))
    assert type(info.value) is NoResults and "src" in str(info.value) and "999" in str(info.value)
    assert info.value.datasetType == "src"
    storage = Storage.makeFromURI(server.repo("input"), create=False)
    registry = HttpRegistry(storage, "registry.sqlite3")
    assert "raw" in registry.tables()
    with pytest.raises(RegistrySchemaError, match="nocolumn"):
        registry.lookup(["nocolumn"], ["raw"], {})


def test_the_http_registry_answers_as_the_local_one(server, demo):
    remote = HttpRegistry(Storage.makeFromURI(server.repo("input"), create=False), "registry.sqlite3")
    with SqliteRegistry(os.path.join(demo["input"], "registry.sqlite3")) as local:
        assert remote.tables() == local.tables() and remote.columns("raw") == local.columns("raw")
        for registry in (remote, local):
            assert registry.queryMetadata("raw", ("visit", "filter"), {"detector": 1, "nokey": 3}) == \
                local.queryMetadata("raw", ("visit", "filter"), {"detector": 1})
        query = (["visit", "detector"], ["raw"], [("filter", "?")], None, ["g"])
        assert remote.executeQuery(*query) == local.executeQuery(*query) != []
        dated = (["visit"], ["raw"], None, ("?", "dateObs", "dateObs"), [local.lookup("dateObs", "raw", {})[0][0]])
        assert remote.executeQuery(*dated) == local.executeQuery(*dated) != []
    with pytest.raises(RegistryError, match="no registry operation"):
        Storage.makeFromURI(server.repo("input"), create=False).registryQuery("drop", "registry.sqlite3")


def test_tagged_remote_version_against_a_local_one(server, demo):
    both = Butler(inputs=[RepositoryArgs(root=server.repo("v1"), tags="theirs"),
                          RepositoryArgs(root=demo["v2"], tags="ours")])
    theirs = both.get("src", DataId(visit=101, detector=0, tag="theirs"))
    ours = both.get("src", DataId(visit=101, detector=0, tag="ours"))
    assert list(theirs["id"]) == list(Butler(inputs=demo["v1"]).get("src", visit=101, detector=0)["id"])
    assert len(ours) == len(Butler(inputs=demo["v2"]).get("src", visit=101, detector=0))
    repos = {repo.root: repo.tags for repo in both.repositories()}
    assert repos[server.repo("v1")] == {"theirs"} and "ours" in repos[demo["v2"]]


def test_rerun_chain_with_a_remote_parent_writes_locally(server, demo, tmp_path):
    rerun = str(tmp_path / "rerun")
    butler = Butler(inputs=server.repo("v1"), outputs=rerun)
    src = butler.get("src", visit=101, detector=0)
    butler.put(src, "src", visit=101, detector=0)
    assert os.path.exists(butler.getUri("src", visit=101, detector=0, write=True))
    assert RepositoryCfg.read(rerun).parents == [server.repo("v1")]
    again = Butler(inputs=rerun, outputs=str(tmp_path / "rerun2"))
    roots = [r.root for r in again.repositories()]
    assert roots[-3:] == [rerun, server.repo("v1"), server.repo("input")]
    assert list(again.get("src", visit=101, detector=0)["id"]) == list(src["id"])  # from the local rerun
    assert len(again.get("src", visit=102, detector=1)) > 0  # from the remote parent


# -- credentials -----------------------------------------------------------------------------------


def test_tokens(demo, butler_server, tmp_path, monkeypatch):
    secret = "s3cr3t-token-value"
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# allowed\n{secret}\nanother\n")
    server = butler_server([demo["input"]], "--token-file", str(token_file))
    for setting in (None, "wrong-token"):
        if setting:
            monkeypatch.setenv(TOKEN_ENV, setting)
        with pytest.raises(AccessDenied) as info:
            Butler(inputs=server.repo("input"))
        message = str(info.value)
        assert server.url in message and "\n" not in message and "wrong-token" not in message
    assert get(server.api("/repositories")).status_code == 401
    monkeypatch.setenv(TOKEN_ENV, secret)
    assert Butler(inputs=server.repo("input")).queryMetadata("raw", ["visit"])
    monkeypatch.delenv(TOKEN_ENV)
    mine = tmp_path / "my-token"
    mine.write_text(secret + "\n")
    mine.chmod(0o644)
    monkeypatch.setenv(TOKEN_FILE_ENV, str(mine))
    with pytest.raises(AccessDenied, match="0600"):
        Butler(inputs=server.repo("input"))
    mine.chmod(0o600)
    assert Butler(inputs=server.repo("input")).queryMetadata("raw", ["visit"])
    assert secret not in server.log.read_text()


# -- failures of the server ---------------------------------------------------------------------------


def _one_shot_server(answer: bytes, hang: float = 0.0) -> tuple[str, threading.Thread]:
    """A socket that answers one request with ``answer`` (then waits ``hang`` seconds) and closes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(answer)
        time.sleep(hang)
        connection.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", thread


@pytest.mark.parametrize("hang", [0.0, 12.0], ids=["cut-short", "stalled"])
def test_a_server_failing_mid_transfer_is_storage_unavailable(hang):
    base, thread = _one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000, hang)
    client = HttpClient(base, None)
    start = time.monotonic()
    try:
        with pytest.raises(StorageUnavailable) as info:
            client.request("/api/v1/repositories/r/files/big.fits")
    finally:
        client.close()
    assert time.monotonic() - start < 10.5
    assert f"{base}/api/v1/repositories/r/files/big.fits" in str(info.value)
    thread.join(15)


# -- every obs_lsst camera, served --------------------------------------------------------------------

CAMERAS = ["comCam", "imsim", "latiss", "lsstCam", "phosim", "ts3", "ts8", "ucd"]


@pytest.fixture(scope="module")
def cameras(shared_data, module_server):
    inputs = shared_data / "obs_lsst" / "data" / "input"
    before = tree_fingerprint(inputs)
    yield inputs, module_server([inputs / camera for camera in CAMERAS])
    assert tree_fingerprint(inputs) == before


@pytest.mark.parametrize("camera", CAMERAS)
def test_every_obs_lsst_camera_served_answers_as_locally(cameras, camera):
    inputs, server = cameras
    remote, local = Butler(inputs=server.repo(camera)), Butler(inputs=str(inputs / camera))
    keys = ["expId", "detector"]
    rows = local.queryMetadata("raw", keys)
    assert rows and remote.queryMetadata("raw", keys) == rows
    assert remote.queryMetadata("raw", "filter") == local.queryMetadata("raw", "filter")
    expId, detector = rows[0]
    there, here = remote.get("raw", expId=expId, detector=detector), local.get("raw", expId=expId, detector=detector)
    np.testing.assert_array_equal(there.data, here.data)
    assert dict(there.header) == dict(here.header)


def test_a_ranged_read_of_a_file_replaced_meanwhile_fails(tmp_path):
    directory, server = served_scratch()
    name = f"replaced-{time.monotonic_ns()}"
    (directory / name).mkdir()
    content = bytes(range(256)) * 1024  # 256 KiB: read in several ranges
    (directory / name / "f.bin").write_bytes(content)
    storage = Storage.makeFromURI(f"{server.repo('scratch')}/{name}", create=False)
    with storage.openRead("f.bin") as stream:
        assert stream.read(100) == content[:100]
        replacement = directory / name / "f.new"
        replacement.write_bytes(content[::-1])
        replacement.replace(directory / name / "f.bin")
        stream.seek(200_000)
        with pytest.raises(StorageUnavailable, match="changed"):
            stream.read(100)
    assert storage.readBytes("f.bin") == content[::-1]


def test_a_remote_mapper_is_resolved_by_the_trust_rules(tmp_path, butler_server):
    root = tmp_path / "untrusted"
    root.mkdir()
    (root / "_mapper").write_text("evilpkg.mapper.EvilMapper\n")
    package = tmp_path / "server-code" / "evilpkg"  # trusted by the server's operator, unknown to the client
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mapper.py").write_text("from butler.mapper import Mapper\n\n\nclass EvilMapper(Mapper):\n    pass\n")
    server = butler_server([root], env={"PYTHONPATH": str(package.parent), "BUTLER_TRUSTED_MAPPERS": "evilpkg"})
    assert get(server.api("/repositories/untrusted")).json()["mapper"] == "evilpkg.mapper.EvilMapper"
    with pytest.raises(UntrustedMapperError, match="evilpkg"):
        Butler(inputs=server.repo("untrusted")).get("raw", visit=1)
    assert "evilpkg" not in sys.modules


@pytest.mark.parametrize("name", ["Exception", "os.system", "SystemExit", "__class__", "describe_data_id"])
def test_only_package_error_classes_cross_the_wire(name):
    with pytest.raises(ButlerError) as info:
        raise_remote_error({"error": {"type": name, "message": "boom"}}, "http://h/x", 500)
    assert type(info.value) is ButlerError and name in str(info.value) and "boom" in str(info.value)
    with pytest.raises(NoResults, match="^boom$"):
        raise_remote_error({"error": {"type": "NoResults", "message": "boom"}}, "http://h/x", 404)
    with pytest.raises(StorageUnavailable, match="http://h/x"):
        raise_remote_error("<html>proxy error</html>", "http://h/x", 502)
