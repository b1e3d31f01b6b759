"""S3 repository roots against real servers (rclone serve s3, moto_server): the Butler's RFC-184 cases
with outputs, inputs and mixed chains on S3, request counts, multipart uploads, faults and the
registry cache.

The servers come from the tests/s3_server.py plugin; `S3Storage` is also run through the whole
storage conformance suite (tests/test_storage_conformance.py).
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter

import pytest
import yaml
from s3_server import free_port, s3_env

from butler import Butler, ButlerLocation, DataId, Mapper, NoResults, RepositoryArgs, RepositoryCfg
from butler.errors import (
    AccessDenied,
    ButlerError,
    DatasetNotFoundError,
    RepositoryError,
    StorageUnavailable,
    UnknownStorageError,
)
from butler.registry import Registry
from butler.storage import Storage, s3 as s3_module
from butler.test import MapperForTestWriting, TestObject


class PlainMapper(Mapper):
    """``foo`` as a pickle named after the data ID, mapped without looking at the storage."""

    def __init__(self, root, repository=None, **kwargs):
        self.root = root
        self.storage = repository.storage

    def map_foo(self, dataId, write):
        name = "foo" + "".join(f"_{k}{v}" for k, v in sorted(dataId.items())) + ".pickle"
        return ButlerLocation(TestObject, None, "PickleStorage", name, dict(dataId), self, self.storage)


@pytest.fixture
def s3_root(s3_server):
    """A factory of fresh roots in a fresh bucket of the current server."""
    bucket = s3_server.new_bucket()
    return lambda name: f"s3://{bucket}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def roots(s3_root, tmp_path):
    """``roots(kind, name)``: a fresh root on S3 (``"s3"``) or in a local directory (``"local"``)."""
    return lambda kind, name: s3_root(name) if kind == "s3" else str(tmp_path / name)


class Requests:
    """The S3 requests this process sends, counted by operation with a botocore event hook."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.client = s3_module._client(None)
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, request, **kwargs):
        self.counts[(request.method, kwargs.get("event_name", "").rpartition(".")[2])] += 1
        return None

    def close(self):
        self.client.meta.events.unregister("before-send.s3", self._count)

    def take(self) -> Counter:
        counts, self.counts = self.counts, Counter()
        return counts


@pytest.fixture
def requests_sent(s3_server):
    counter = Requests()
    yield counter
    counter.close()


def put_foo(root, value, mapper=MapperForTestWriting, **dataId):
    butler = Butler(outputs=RepositoryArgs(root=root, mapper=mapper))
    butler.put(TestObject(value), "foo", dataId)
    return butler


def raw_parents(root) -> list:
    """The ``_parents`` a cfg file holds, as written (no resolution)."""
    storage = Storage.makeFromURI(root, create=False)
    return yaml.safe_load(storage.readBytes("repositoryCfg.yaml").split(b"\n", 1)[1])["_parents"]


# -- the Butler's RFC-184 cases over S3 and mixed chains -------------------------------------------

CHAINS = [("s3", "s3"), ("local", "s3"), ("s3", "local")]


@pytest.mark.parametrize("base_kind, out_kind", CHAINS, ids=["s3-over-s3", "s3-over-local", "local-over-s3"])
def test_rfc184_chain_masking_and_reopen(roots, base_kind, out_kind):
    base, v1 = roots(base_kind, "base"), roots(out_kind, "v1")
    put_foo(base, "old", visit=1)
    put_foo(base, "only-in-base", visit=2)
    b = Butler(inputs=base, outputs=RepositoryArgs(root=v1, mode="rw"))
    b.put(TestObject("new"), "foo", visit=1)
    assert b.get("foo", visit=1) == TestObject("new")  # the output masks the input
    assert b.get("foo", visit=2) == TestObject("only-in-base")
    assert raw_parents(v1) == [base]  # across schemes, and in an object store: absolute
    reopened = Butler(outputs=RepositoryArgs(root=v1, mode="rw"))  # the parents come back
    assert reopened.get("foo", visit=2) == TestObject("only-in-base")
    assert [r.cfg.root for r in reopened._repos.inputs()] == [v1, base]
    assert Butler(inputs=v1).get("foo", visit=1) == TestObject("new")
    with pytest.raises(NoResults, match=v1.replace("/", ".")):
        Butler(inputs=v1).get("foo", visit=3)


@pytest.mark.parametrize("kinds", [("s3", "s3", "s3", "s3"), ("s3", "local", "s3", "local")],
                         ids=["all-s3", "mixed"])
def test_diamond_parents_are_searched_once_depth_first(roots, kinds):
    a, b_, c, d = (roots(kind, name) for kind, name in zip(kinds, "abcd"))
    put_foo(a, "a", k=0)
    Butler(inputs=a, outputs=b_)
    Butler(inputs=a, outputs=c)
    Butler(inputs=[b_, c], outputs=d)
    butler = Butler(inputs=d)
    assert [r.cfg.root for r in butler._repos.inputs()] == [d, b_, a, c]
    assert butler.get("foo", k=0) == TestObject("a")


def test_tagged_versions_on_s3_and_local(roots):
    base, v1, v2 = roots("s3", "base"), roots("s3", "v1"), roots("local", "v2")
    put_foo(base, "raw", visit=1)
    for version, name in ((v1, "v1"), (v2, "v2")):
        Butler(inputs=base, outputs=version).put(TestObject(name), "foo", visit=2)
    both = Butler(inputs=[RepositoryArgs(root=v1, tags="v1"), {"root": v2, "tags": ["v2"]}])
    assert both.get("foo", DataId({"visit": 2}, tag="v1")) == TestObject("v1")
    assert both.get("foo", DataId({"visit": 2}, tag="v2")) == TestObject("v2")
    assert both.get("foo", DataId(visit=1, tag="v2")) == TestObject("raw")


def test_reopen_rules_and_backups_on_s3(roots):
    a, b_, out = roots("s3", "a"), roots("local", "b"), roots("s3", "out")
    put_foo(a, 1, k=1)
    put_foo(b_, 2, k=2)
    Butler(inputs=a, outputs=out)
    Butler(inputs=[a, b_], outputs=out)  # extended at the end: recorded
    assert RepositoryCfg.read(out).parents == [a, b_]
    with pytest.raises(RuntimeError, match="parents"):
        Butler(inputs=[b_, a], outputs=out)
    rw = Butler(outputs=RepositoryArgs(root=roots("s3", "rw"), mapper=MapperForTestWriting, mode="rw"))
    for value in (1, 2, 3):
        rw.put(TestObject(value), "foo", k=1, doBackup=True)
    storage = rw.outputRepositories()[0].storage
    assert rw.get("foo", k=1) == TestObject(3)
    assert storage.listNames() == ["filename_k1.txt", "filename_k1.txt~1", "filename_k1.txt~2",
                                   "repositoryCfg.yaml"]


def test_dataset_exists_and_uri_on_s3(roots):
    a = roots("s3", "a")
    put_foo(a, 1, k=1)
    b = Butler(inputs=a, outputs=roots("local", "out"))
    assert b.datasetExists("foo", k=1) and not b.datasetExists("foo", k=2)
    assert b.getUri("foo", k=1) == a + "/filename_k1.txt"


@pytest.mark.parametrize("parent_key", ["_parent/filename_k1.txt", "_parent", "_parent.rclonelink"],
                         ids=["copied-directory", "file", "uploaded-symlink"])
def test_old_style_parent_on_s3_is_refused_with_a_clear_error(s3_server, s3_root, parent_key):
    root = s3_root("v1")
    bucket, _, prefix = root[len("s3://"):].partition("/")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key=f"{prefix}/_mapper", Body=b"butler.test.MapperForTestWriting\n")
    client.put_object(Bucket=bucket, Key=f"{prefix}/{parent_key}", Body=b"/somewhere/else")
    with pytest.raises(RepositoryError, match=r"old-style _parent links are not supported on S3") as info:
        Butler(inputs=root)
    assert f"{prefix}/_parent" in str(info.value)


# -- requests: one per get and put, misses without a HEAD ----------------------------------------

def test_one_put_one_get_and_misses_are_one_get_each(roots, requests_sent):
    chain = [roots("s3", f"r{i}") for i in range(3)]
    put_foo(chain[0], "deep", mapper=PlainMapper, k=1)
    for parent, child in zip(chain, chain[1:]):
        Butler(inputs=parent, outputs=child)
    butler = Butler(inputs=chain[-1], outputs=roots("s3", "out"))
    butler.put(TestObject("first"), "foo", k=0)  # the mappers are made (and ask for parent registries)
    butler.get("foo", k=1)
    requests_sent.take()
    butler.put(TestObject("x"), "foo", k=2)
    assert requests_sent.take() == Counter({("PUT", "PutObject"): 1})
    assert butler.get("foo", k=1) == TestObject("deep")  # found in the third repository searched
    assert requests_sent.take() == Counter({("GET", "GetObject"): 3})
    with pytest.raises(NoResults):
        butler.get("foo", k=9)
    assert requests_sent.take() == Counter({("GET", "GetObject"): 3})  # a miss is one GET, no HEAD


def test_opening_a_chain_reads_each_cfg_once(roots, requests_sent):
    chain = [roots("s3", f"r{i}") for i in range(4)]
    put_foo(chain[0], "deep", mapper=PlainMapper, k=1)
    for parent, child in zip(chain, chain[1:]):
        Butler(inputs=parent, outputs=child)
    s3_module._known_roots.clear()  # as a fresh process
    requests_sent.take()
    Butler(inputs=chain[-1])
    assert requests_sent.take() == Counter({("GET", "GetObject"): 4})


# -- multipart ---------------------------------------------------------------------------------------

def test_multipart_round_trip_above_8_mib(s3_server, s3_root, requests_sent, tmp_path):
    storage = Storage.makeFromURI(s3_root("big"))
    data = os.urandom(s3_module.MULTIPART_THRESHOLD + 12345)
    requests_sent.take()
    storage.writeBytes("big.bin", data)
    assert requests_sent.take() == Counter({("POST", "CreateMultipartUpload"): 1, ("PUT", "UploadPart"): 2,
                                            ("POST", "CompleteMultipartUpload"): 1})
    assert storage.readBytes("big.bin") == data
    local = tmp_path / "big.local"
    local.write_bytes(data[::-1])
    storage.putFile(str(local), "placed.bin")
    with storage.openRead("placed.bin") as stream:
        assert stream.read(5) == data[::-1][:5] and stream.read() == data[::-1][5:]


def test_a_failed_multipart_upload_is_aborted_and_leaves_nothing(s3_server, s3_root):
    storage = Storage.makeFromURI(s3_root("big"))

    def fail(**kwargs):
        raise RuntimeError("injected failure after one part")

    storage._client.meta.events.register("after-call.s3.UploadPart", fail)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            storage.writeBytes("big.bin", os.urandom(s3_module.MULTIPART_THRESHOLD * 2 + 1))
    finally:
        storage._client.meta.events.unregister("after-call.s3.UploadPart", fail)
    assert not storage.exists("big.bin")
    bucket = storage.bucket
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    from butler.storage import Storage
    storage = Storage.makeFromURI(sys.argv[1])
    def stall(**kwargs):
        print("part", flush=True)
        time.sleep(60)
    storage._client.meta.events.register("after-call.s3.UploadPart", stall)
    storage.writeBytes("big.bin", os.urandom(3 * (8 << 20)))
""")


def test_a_client_killed_mid_multipart_leaves_no_visible_object(s3_server, s3_root):
    root = s3_root("killed")
    storage = Storage.makeFromURI(root)
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, root], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline() == b"part\n"  # one part is uploaded
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert not storage.exists("big.bin")
    assert storage.listNames() == []
    with pytest.raises(DatasetNotFoundError):
        storage.readBytes("big.bin")


# -- faults ------------------------------------------------------------------------------------------

def test_a_killed_server_is_storage_unavailable_within_10_s_and_a_restart_goes_on(private_rclone):
    bucket = private_rclone.new_bucket()
    root = f"s3://{bucket}/repo"
    butler = Butler(outputs=RepositoryArgs(root=root, mapper=PlainMapper, mode="rw"))
    butler.put(TestObject(1), "foo", visit=7)
    private_rclone.stop(signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        butler.get("foo", visit=7)
    assert time.monotonic() - start < 10
    message = str(info.value)
    for word in (private_rclone.endpoint, bucket, "repo/foo_visit7.pickle", "'visit': 7"):
        assert word in message, message
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(StorageUnavailable):
        butler.put(TestObject(2), "foo", visit=8)
    private_rclone.start()
    assert butler.get("foo", visit=7) == TestObject(1)
    butler.put(TestObject(2), "foo", visit=8)
    assert butler.get("foo", visit=8) == TestObject(2)


def _unavailable_within_10_s(endpoint: str, monkeypatch) -> None:
    """Opening a root at ``endpoint`` is a `StorageUnavailable` naming it and the bucket, within 10 s."""
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match="nobucket") as info:
        Storage.makeFromURI("s3://nobucket/repo", create=False)
    assert time.monotonic() - start < 10 and endpoint in str(info.value)


def test_no_server_at_the_endpoint_is_storage_unavailable_naming_it(monkeypatch, tmp_path, rclone_s3):
    s3_env(rclone_s3, monkeypatch, str(tmp_path / "cache"))
    _unavailable_within_10_s(f"http://127.0.0.1:{free_port()}", monkeypatch)


def test_a_server_that_never_answers_is_storage_unavailable_within_10_s(monkeypatch, tmp_path, rclone_s3):
    """An endpoint that accepts connections and sends nothing (a hung server) never hangs a call."""
    s3_env(rclone_s3, monkeypatch, str(tmp_path / "cache"))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the kernel's queue; nothing is ever read or sent
        _unavailable_within_10_s(f"http://127.0.0.1:{silent.getsockname()[1]}", monkeypatch)


def test_a_wrong_secret_is_one_line_access_denied_without_the_secret(rclone_s3, monkeypatch, tmp_path):
    s3_env(rclone_s3, monkeypatch, str(tmp_path / "cache"))
    wrong = f"wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    with pytest.raises(AccessDenied) as info:
        Storage.makeFromURI(f"s3://{rclone_s3.bucket}/repo", create=False)
    message = str(info.value)
    assert "\n" not in message and wrong not in message and rclone_s3.secret not in message
    for word in (rclone_s3.endpoint, rclone_s3.bucket, rclone_s3.key):
        assert word in message, message
    assert isinstance(info.value, PermissionError)


def test_a_profile_in_the_uri_gives_the_credentials(rclone_s3, monkeypatch, tmp_path):
    s3_env(rclone_s3, monkeypatch, str(tmp_path / "cache"))
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[butlerprof]\naws_access_key_id = {rclone_s3.key}\n"
                           f"aws_secret_access_key = {rclone_s3.secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    root = f"s3://butlerprof@{rclone_s3.bucket}/prof-{uuid.uuid4().hex[:8]}"
    storage = Storage.makeFromURI(root)
    storage.writeBytes("x.txt", b"through the profile")
    assert storage.root == root and storage.profile == "butlerprof"
    assert Storage.makeFromURI(root, create=False).readBytes("x.txt") == b"through the profile"


def test_an_object_truncated_behind_the_servers_back_is_an_error_naming_it(private_rclone, tmp_path):
    bucket = private_rclone.new_bucket()
    root = f"s3://{bucket}/repo"
    butler = Butler(outputs=RepositoryArgs(root=root, mapper=PlainMapper, mode="rw"))
    butler.put(TestObject(list(range(1000))), "foo", visit=1)
    assert butler.get("foo", visit=1) == TestObject(list(range(1000)))
    path = tmp_path / "rclone-data" / bucket / "repo" / "foo_visit1.pickle"
    with open(path, "r+b") as stream:
        stream.truncate(path.stat().st_size // 2)
    with pytest.raises(ButlerError, match=f"s3://{bucket}/repo/foo_visit1.pickle") as info:
        butler.get("foo", visit=1)
    assert not isinstance(info.value, DatasetNotFoundError)


def test_an_object_whose_bytes_disagree_with_its_stored_md5_is_an_error(moto_s3, monkeypatch, tmp_path):
    s3_env(moto_s3, monkeypatch, str(tmp_path / "cache"))  # moto keeps user metadata (rclone does not)
    bucket, prefix = moto_s3.bucket, f"md5-{uuid.uuid4().hex[:8]}"
    root = f"s3://{bucket}/{prefix}"
    storage = Storage.makeFromURI(root)
    moto_s3.client().put_object(Bucket=bucket, Key=f"{prefix}/x.bin", Body=b"changed",
                                  Metadata={"butler-md5": "0" * 32})
    with pytest.raises(ButlerError, match=f"{root}/x.bin.*MD5"):
        storage.readBytes("x.bin")


def test_a_butler_over_s3_pickles_and_its_copy_reads_in_another_process(roots):
    a = roots("s3", "a")
    put_foo(a, "pickled", mapper=PlainMapper, k=1)
    butler = Butler(inputs=a, outputs=RepositoryArgs(root=roots("s3", "out"), mode="rw"))
    copy = pickle.loads(pickle.dumps(butler))
    assert copy.get("foo", k=1) == TestObject("pickled")
    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read()).get('foo', k=1).data)"
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(butler), capture_output=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                               "BUTLER_TRUSTED_MAPPERS": "test_storage_s3"})
    assert done.stdout == b"pickled\n", done.stderr.decode()


def test_boto3_is_imported_only_when_an_s3_uri_is_used(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from butler import Butler, RepositoryArgs
        from butler.test import MapperForTestWriting, TestObject
        Butler(outputs=RepositoryArgs(root={str(tmp_path)!r}, mapper=MapperForTestWriting)).put(
            TestObject(1), "foo", k=1)
        print(sorted(name for name in ("boto3", "botocore", "butler.storage.s3") if name in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip() == "[]"


def test_missing_boto3_is_an_install_hint(monkeypatch):
    monkeypatch.setitem(Storage._storages, "s3", "butler.storage.s3.S3Storage")
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "butler.storage.s3")
    with pytest.raises(UnknownStorageError, match=r"pip install 'butler\[s3\]'"):
        Storage.makeFromURI("s3://bucket/x")


# -- locks ---------------------------------------------------------------------------------------------

def test_lock_is_a_conditional_lock_object_where_the_server_honours_it(moto_s3, monkeypatch, tmp_path):
    s3_env(moto_s3, monkeypatch, str(tmp_path / "cache"))
    storage = Storage.makeFromURI(f"s3://{moto_s3.bucket}/lock-{uuid.uuid4().hex[:8]}")
    client = moto_s3.client()
    with storage.lock("a/x.fits"):
        key = storage._key("a/x.fits.butler-lock")
        assert client.head_object(Bucket=storage.bucket, Key=key)["ContentLength"] > 0
        with pytest.raises(Exception, match="PreconditionFailed"):
            client.put_object(Bucket=storage.bucket, Key=key, Body=b"", IfNoneMatch="*")
    assert client.list_objects_v2(Bucket=storage.bucket, Prefix=storage._key("a/")).get("KeyCount") == 0


def test_lock_on_a_server_ignoring_conditions_is_process_local_and_says_so(rclone_s3, monkeypatch, tmp_path,
                                                                           caplog):
    s3_env(rclone_s3, monkeypatch, str(tmp_path / "cache"))
    monkeypatch.setattr(s3_module, "_unconditional_endpoints", set())
    storage = Storage.makeFromURI(f"s3://{rclone_s3.bucket}/lock-{uuid.uuid4().hex[:8]}")
    with caplog.at_level("WARNING", logger="butler.storage.s3"), storage.lock("x.txt"):
        pass
    assert "ignores If-None-Match" in caplog.text and "within this process only" in caplog.text
    assert storage.listNames() == []


# -- a SQLite registry in a bucket ---------------------------------------------------------------------

def make_registry_file(path, visits):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE raw (visit INTEGER, ccd INTEGER)")
        conn.executemany("INSERT INTO raw VALUES (?, ?)", [(v, 1) for v in visits])
    conn.close()


def test_a_sqlite_registry_in_a_bucket_is_read_from_an_etag_keyed_cache(s3_server, s3_root, tmp_path,
                                                                        requests_sent):
    storage = Storage.makeFromURI(s3_root("reg"))
    local = tmp_path / "registry.sqlite3"
    make_registry_file(local, [1, 2])
    storage.putFile(str(local), "registry.sqlite3")
    registry = Registry.create(storage, "registry.sqlite3")
    assert sorted(registry.queryMetadata("raw", ["visit"], {})) == [(1,), (2,)]
    cached = registry.location
    assert cached.startswith(os.environ["BUTLER_CACHE_DIR"]) and os.path.exists(cached)
    registry.close()
    requests_sent.take()
    again = Registry.create(storage, "registry.sqlite3")
    assert again.location == cached  # not fetched again: a conditional GET answered "not modified"
    again.close()
    assert requests_sent.take()[("GET", "GetObject")] == 1
    local.unlink()
    make_registry_file(local, [3])
    storage.putFile(str(local), "registry.sqlite3")  # a changed object is fetched again
    changed = Registry.create(storage, "registry.sqlite3")
    assert changed.location != cached and list(changed.queryMetadata("raw", ["visit"], {})) == [(3,)]
    changed.close()


def test_a_repository_in_a_bucket_gives_its_registry_to_children(roots, tmp_path):
    a = roots("s3", "a")
    Butler(outputs=RepositoryArgs(root=a, mapper=PlainMapper))
    local = tmp_path / "registry.sqlite3"
    make_registry_file(local, [5])
    Storage.makeFromURI(a).putFile(str(local), "registry.sqlite3")
    child = Butler(inputs=a, outputs=roots("local", "child"))
    registry = child._repos.outputs()[0].parentRegistry
    assert list(registry.queryMetadata("raw", ["visit"], {})) == [(5,)]
