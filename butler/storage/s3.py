"""`S3Storage`: a repository under a prefix of an S3 bucket (boto3; ``pip install 'butler[s3]'``).

A root is ``s3://bucket/prefix`` or ``s3://profile@bucket/prefix`` (the
profile of the AWS config files, as in lsst-resources). The endpoint comes from
``S3_ENDPOINT_URL`` (AWS itself when unset); credentials from boto3's usual
chain (environment, the profile, instance metadata). ``repositoryCfg.yaml``
lives at the prefix.

How the primitives map to requests:

* a read is one GET; a missing key (``NoSuchKey``/404) is a miss
  (`DatasetNotFoundError`), with no HEAD before or after. The body is checked
  against its ``Content-Length`` and its MD5 (the object's ``butler-md5``
  metadata, else a single-part ETag): an object truncated or changed behind
  the server's back is an error naming its URI, never data.
* a write is one PUT with ``Content-MD5`` (no HEAD first, no temporary file
  for `writeBytes`); above `MULTIPART_THRESHOLD` a multipart upload, aborted on
  any failure, so a failed or killed writer leaves no visible object.
* `exists` is one LIST (a key, or a "directory" prefix).
* a root exists when it holds an object; ``create=True`` on an empty root puts
  a zero-byte `ROOT_MARKER` object there (never listed), so an empty
  repository exists. A root seen to
  exist is remembered for the process.
* `lock`: S3 has no locks. Within one process a lock is a thread lock; across
  processes it is a lock object ``<key>.butler-lock`` created with a
  conditional PUT (``If-None-Match: *``) and deleted at the end. A server that
  ignores the condition (``rclone serve s3`` does) is detected on first use and
  then only the process-local lock holds: that is logged as a warning once per
  endpoint, never assumed silently.
* `localFile` gives a private copy; `cachedLocalFile` (how a SQLite registry
  in a bucket is opened) keeps a copy in a cache directory named by the
  object's ETag, revalidated with one conditional GET per open.
* old-style ``_parent`` links cannot exist on S3: meeting one is an error.

Every client has bounded timeouts (connect `CONNECT_TIMEOUT` s, read
`READ_TIMEOUT` s, `MAX_ATTEMPTS` attempts in all): an unreachable endpoint is a
`StorageUnavailable` naming endpoint, bucket and key; refused credentials an
`AccessDenied` naming the access key id, never the secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import posixpath
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import boto3
import botocore.config
import botocore.exceptions

from ..errors import (
    AccessDenied,
    ButlerError,
    DatasetNotFoundError,
    FormatterError,
    RepositoryError,
    StorageUnavailable,
)
from ..safeio import write_bytes
from .base import StorageInterface, scratch_writer, split_uri

__all__ = ["S3Storage", "CONNECT_TIMEOUT", "READ_TIMEOUT", "MAX_ATTEMPTS", "MULTIPART_THRESHOLD", "cache_dir"]

_log = logging.getLogger(__name__)

#: seconds to wait for a connection to the endpoint
CONNECT_TIMEOUT = 5
#: seconds to wait for a server's next bytes (with `MAX_ATTEMPTS`, a server that never answers fails within 10 s)
READ_TIMEOUT = 4
#: attempts per request, the first included
MAX_ATTEMPTS = 2
#: objects larger than this are written by a multipart upload, in parts of this size
MULTIPART_THRESHOLD = 8 << 20
#: objects up to this size are read whole by `openRead` (and checked before anything sees them)
_WHOLE_READ = 8 << 20
#: how long the cfg fetched to prove a root exists may answer the next read of it
_PREFETCH_SECONDS = 2.0
#: a lock object older than this is taken to be left by a dead holder and broken
LOCK_STALE_SECONDS = 300.0
#: how long `lock` waits for another holder before giving up
LOCK_WAIT_SECONDS = 60.0
_LOCK_SUFFIX = ".butler-lock"
#: the zero-byte object that makes a new, empty root exist (an object store has no empty directories)
ROOT_MARKER = ".butler-root"
_MD5_METADATA = "butler-md5"
_PARENT_LINK = "_parent"
_CFG_FILENAME = "repositoryCfg.yaml"
_READ_OPERATIONS = frozenset({"get_object", "head_object", "list_objects_v2"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
                           "InvalidToken", "ExpiredToken", "AllAccessDisabled"})
_NETWORK_ERRORS = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                   botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError,
                   botocore.exceptions.ResponseStreamingError, botocore.exceptions.IncompleteReadError,
                   botocore.exceptions.HTTPClientError)

#: (profile, endpoint, credentials in the environment) -> (pid, client): one client per process, made
#: again after a fork
_clients: dict[tuple, tuple[int, Any]] = {}
#: client -> the access key id it signs with (named when a server refuses it; the secret never is)
_access_key_ids: dict[Any, str] = {}
#: roots seen to exist in this process (a repository is not expected to vanish while used)
_known_roots: set[tuple[str | None, str | None, str]] = set()
#: endpoints seen to ignore ``If-None-Match`` (their locks are process-local only), and to honour it
_unconditional_endpoints: set[str | None] = set()
_conditional_endpoints: set[str | None] = set()
#: key -> thread lock, for locks within this process
_thread_locks: dict[str, threading.Lock] = {}
_table_lock = threading.Lock()


def cache_dir() -> str:
    """The directory of cached copies (`S3Storage.cachedLocalFile`): ``BUTLER_CACHE_DIR``, else the
    user's cache directory (``XDG_CACHE_HOME`` or ``~/.cache``) + ``/butler/s3``."""
    explicit = os.environ.get("BUTLER_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "butler", "s3")


def _client(profile: str | None) -> Any:
    """The boto3 S3 client of a profile and the endpoint in ``S3_ENDPOINT_URL`` (made once per process)."""
    endpoint = os.environ.get("S3_ENDPOINT_URL") or None
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    key = (profile, endpoint, os.environ.get("AWS_PROFILE"), os.environ.get("AWS_ACCESS_KEY_ID"),
           hashlib.sha256(secret.encode()).hexdigest() if secret else None)  # credentials from the environment
    entry = _clients.get(key)
    if entry is not None and entry[0] == os.getpid():
        return entry[1]
    session = boto3.session.Session(profile_name=profile)
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
        max_pool_connections=32)
    client = session.client("s3", endpoint_url=endpoint, region_name=session.region_name or "us-east-1",
                            config=config)
    client.meta.events.register_last("before-call.s3", _without_expect)  # after botocore's own
    _clients[key] = (os.getpid(), client)
    credentials = session.get_credentials()
    _access_key_ids[client] = getattr(credentials, "access_key", None) or "(none)"
    return client


def _without_expect(params: dict, **kwargs: Any) -> None:
    """Send uploads without ``Expect: 100-continue``: a body of at most one part is sent whole anyway,
    and some servers (rclone serve s3 after an empty body) leave the connection hanging on it."""
    params.get("headers", {}).pop("Expect", None)


def _content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(StorageInterface):
    """A repository under ``s3://[profile@]bucket/prefix``.

    Parameters
    ----------
    uri : `str`
        The root.
    create : `bool`
        Create the root (a ``prefix/`` marker object) if nothing is there;
        otherwise a missing root (or bucket) raises `RepositoryError`.

    Raises
    ------
    RepositoryError
        When ``uri`` is not an ``s3://`` URI naming a bucket, or (without
        ``create``) nothing is at the root; also when the bucket does not exist.
    StorageUnavailable
        When the endpoint cannot be reached.
    AccessDenied
        When the server refuses the credentials.
    """

    hasLocalFiles = False
    keepsLocalCopies = True

    def __init__(self, uri: str, create: bool):
        scheme, rest = split_uri(uri)
        netloc, _, path = rest.partition("/")
        profile, _, bucket = netloc.rpartition("@")
        prefix = posixpath.normpath("/" + path).strip("/")
        if scheme != "s3" or not bucket:
            raise RepositoryError(f"{uri!r} is not an s3://[profile@]bucket/prefix repository root")
        self.profile = profile or None
        self.bucket = bucket
        self.prefix = prefix
        self._keyPrefix = prefix + "/" if prefix else ""
        self.root = f"s3://{netloc}" + (f"/{prefix}" if prefix else "")
        self._client = _client(self.profile)
        self.endpoint = self._client.meta.endpoint_url
        self._prefetched: tuple[str, float, bytes, dict] | None = None
        identity = (self.profile, os.environ.get("S3_ENDPOINT_URL"), self.root)
        if identity in _known_roots:
            return
        if not self._root_exists():
            if not create:
                raise RepositoryError(f"no repository at {uri}: no object under {self._where('')}")
            self._call("put_object", "", Key=self._key(ROOT_MARKER), Body=b"")  # an empty root exists
        _known_roots.add(identity)

    def __reduce__(self) -> tuple:
        """Pickled by its root: the copy makes its own client (in its own process)."""
        return type(self), (self.root, True)

    # -- requests and their errors -------------------------------------------------------------

    def _where(self, relpath: str) -> str:
        """What messages name: the object's URI and the endpoint."""
        return f"s3://{self.bucket}/{self._key(relpath)} (endpoint {self.endpoint})"

    def _key(self, relpath: str) -> str:
        return self._keyPrefix + relpath

    def _call(self, operation: str, relpath: str, **kwargs: Any) -> Any:
        """One client call on the bucket; botocore's errors become package errors naming the object.

        A missing key stays a `botocore.exceptions.ClientError` for the caller
        to read as a miss.
        """
        kwargs.setdefault("Bucket", self.bucket)
        if operation not in _READ_OPERATIONS:
            self._prefetched = None  # a write may change what was fetched
        try:
            return getattr(self._client, operation)(**kwargs)
        except botocore.exceptions.ClientError as exc:
            raise self._translated(exc, operation, relpath) from None
        except _NETWORK_ERRORS as exc:
            raise StorageUnavailable(f"S3 {operation} of {self._where(relpath)} failed: "
                                     f"{type(exc).__name__}: {exc}") from None

    def _translated(self, exc: botocore.exceptions.ClientError, operation: str, relpath: str) -> Exception:
        code = _error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if operation in ("get_object", "head_object") and (code in _MISSING_CODES or code == "304"):
            return exc  # a miss, or "not modified": the caller's answer, not an error
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(f"S3 {operation} of {self._where(relpath)} refused ({code or status}) for "
                                f"access key id {self._accessKeyId()}")
        if code == "NoSuchBucket":
            return RepositoryError(f"no bucket {self.bucket!r} at endpoint {self.endpoint} "
                                   f"(for {self._where(relpath)})")
        if status is not None and status >= 500:
            return StorageUnavailable(f"S3 {operation} of {self._where(relpath)} failed: server error "
                                      f"{status} ({code})")
        return StorageUnavailable(f"S3 {operation} of {self._where(relpath)} failed: {code or status}")

    def _accessKeyId(self) -> str:
        return _access_key_ids.get(self._client, "(none)")

    def _get(self, relpath: str, **kwargs: Any) -> dict | None:
        """One GET of a key: the response, or None for a missing key (a 304 answers with its status)."""
        try:
            return self._call("get_object", relpath, Key=self._key(relpath), **kwargs)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) == "304":
                return {"NotModified": True}
            return None

    def _root_exists(self) -> bool:
        """Whether the root holds anything; the cfg is tried first and kept for the next read of it.

        A root at the top of a bucket exists with its bucket.
        """
        if not self._keyPrefix:
            self._call("list_objects_v2", "", MaxKeys=1)  # NoSuchBucket: a RepositoryError
            return True
        response = self._get(_CFG_FILENAME)
        if response is not None:
            data = self._verified_body(response, _CFG_FILENAME)
            self._prefetched = (_CFG_FILENAME, time.monotonic(), data, response)
            return True
        listing = self._call("list_objects_v2", "", Prefix=self._keyPrefix, MaxKeys=1)
        return bool(listing.get("KeyCount"))

    def _take_prefetched(self, relpath: str, consume: bool) -> bytes | None:
        prefetched = self._prefetched
        if prefetched is None or prefetched[0] != relpath:
            return None
        if time.monotonic() - prefetched[1] > _PREFETCH_SECONDS:
            self._prefetched = None
            return None
        if consume:
            self._prefetched = None
        return prefetched[2]

    # -- verified reads -------------------------------------------------------------------------

    def _expected_md5(self, response: dict) -> str | None:
        """The MD5 (hex) the object's bytes must have: its ``butler-md5`` metadata, else a one-part ETag."""
        stored = (response.get("Metadata") or {}).get(_MD5_METADATA)
        if stored:
            return stored.lower()
        etag = str(response.get("ETag", "")).strip('"')
        return etag.lower() if len(etag) == 32 and "-" not in etag else None

    def _mismatch(self, relpath: str, what: str) -> FormatterError:
        return FormatterError(f"{self._where(relpath)} is damaged: {what}; it was changed or truncated "
                              "behind the server's back, and is not read")

    def _read_body(self, body: Any, relpath: str, amount: int | None = None) -> bytes:
        try:
            return body.read() if amount is None else body.read(amount)
        except _NETWORK_ERRORS as exc:
            raise StorageUnavailable(f"reading {self._where(relpath)} failed after part of it arrived "
                                     f"(truncated on the server, or the connection broke): "
                                     f"{type(exc).__name__}: {exc}") from None

    def _verified_body(self, response: dict, relpath: str) -> bytes:
        """The whole body of a GET, checked against its length and MD5."""
        with contextlib.closing(response["Body"]) as body:
            data = self._read_body(body, relpath)
        self._check_body(response, relpath, len(data), lambda: hashlib.md5(data).hexdigest())
        return data

    def _check_body(self, response: dict, relpath: str, size: int, md5: Callable[[], str]) -> None:
        expected_size = response.get("ContentLength")
        if expected_size is not None and size != expected_size:
            raise self._mismatch(relpath, f"{size} bytes arrived of the {expected_size} announced")
        expected = self._expected_md5(response)
        if expected is not None and md5() != expected:
            raise self._mismatch(relpath, f"its bytes have MD5 {md5()}, not the stored {expected}")

    # -- primitives ------------------------------------------------------------------------------

    def _exists(self, relpath: str) -> bool:
        if not relpath:
            return self._root_exists()
        if self._take_prefetched(relpath, consume=False) is not None:
            return True
        key = self._key(relpath)
        listing = self._call("list_objects_v2", relpath, Prefix=key, Delimiter="/", MaxKeys=1000)
        if any(item["Key"] == key for item in listing.get("Contents", ())):
            return True
        if any(p["Prefix"] == key + "/" for p in listing.get("CommonPrefixes", ())):
            return True
        if listing.get("IsTruncated"):  # very many names start with this one: ask for the directory alone
            below = self._call("list_objects_v2", relpath, Prefix=key + "/", MaxKeys=1)
            return bool(below.get("KeyCount"))
        return False

    def _openRead(self, relpath: str) -> IO[bytes]:
        prefetched = self._take_prefetched(relpath, consume=True)
        if prefetched is not None:
            return io.BytesIO(prefetched)
        response = self._get(relpath)
        if response is None:
            raise DatasetNotFoundError(f"no file {relpath} in {self.root} ({self._where(relpath)})")
        if response.get("ContentLength", 0) <= _WHOLE_READ:
            return io.BytesIO(self._verified_body(response, relpath))
        return io.BufferedReader(_VerifiedStream(self, response, relpath), buffer_size=1 << 20)

    def readBytes(self, path: str) -> bytes:
        """Return the bytes of the object at ``path`` (one GET; `DatasetNotFoundError` when missing)."""
        with self.openRead(path) as stream:
            return stream.read()

    def _writer(self, relpath: str) -> contextlib.AbstractContextManager[str]:
        return scratch_writer(relpath, lambda local: self._upload_file(local, relpath))

    def writeBytes(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path``: one PUT with Content-MD5 (a multipart upload above 8 MiB)."""
        relpath = self._check(path)
        data = bytes(data)
        if len(data) > MULTIPART_THRESHOLD:
            self._multipart(relpath, io.BytesIO(data), hashlib.md5(data).hexdigest())
            return
        self._call("put_object", relpath, Key=self._key(relpath), Body=data, ContentMD5=_content_md5(data))

    def _upload_file(self, local: str, relpath: str) -> None:
        """Upload a local file: one PUT, or a multipart upload above the threshold."""
        if os.path.getsize(local) <= MULTIPART_THRESHOLD:
            with open(local, "rb") as stream:
                data = stream.read()
            self._call("put_object", relpath, Key=self._key(relpath), Body=data, ContentMD5=_content_md5(data))
            return
        digest = hashlib.md5()
        with open(local, "rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
            stream.seek(0)
            self._multipart(relpath, stream, digest.hexdigest())

    def _multipart(self, relpath: str, stream: IO[bytes], md5: str) -> None:
        """A multipart upload from a stream, in parts of `MULTIPART_THRESHOLD` bytes, each with its
        Content-MD5; any failure (an interrupt included) aborts it, so no object appears."""
        key = self._key(relpath)
        upload = self._call("create_multipart_upload", relpath, Key=key, Metadata={_MD5_METADATA: md5})
        upload_id = upload["UploadId"]
        try:
            parts = []
            number = 1
            while part := stream.read(MULTIPART_THRESHOLD):
                answer = self._call("upload_part", relpath, Key=key, UploadId=upload_id, PartNumber=number,
                                    Body=part, ContentMD5=_content_md5(part))
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                number += 1
            self._call("complete_multipart_upload", relpath, Key=key, UploadId=upload_id,
                       MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(ButlerError):
                self._call("abort_multipart_upload", relpath, Key=key, UploadId=upload_id)
            raise

    def _listNames(self, relpath: str) -> list[str]:
        prefix = self._key(relpath).rstrip("/") + "/" if relpath else self._keyPrefix
        names = []
        token: dict[str, str] = {}
        while True:
            listing = self._call("list_objects_v2", relpath, Prefix=prefix, **token)
            names += [name for name in (item["Key"][len(self._keyPrefix):] for item in listing.get("Contents", ()))
                      if name != ROOT_MARKER and not name.endswith(("/", _LOCK_SUFFIX))]
            if not listing.get("IsTruncated"):
                return names
            token = {"ContinuationToken": listing["NextContinuationToken"]}

    def _putFile(self, localPath: str, relpath: str, mode: str) -> None:
        if not os.path.isfile(localPath):
            raise DatasetNotFoundError(f"cannot place {localPath} at {relpath} in {self.root}: no such file")
        self._upload_file(localPath, relpath)  # an object store cannot link: link and symlink copy
        if mode == "move":
            os.unlink(localPath)

    def _remove(self, relpath: str) -> None:
        if not self._exists(relpath):  # S3 deletes a missing key without a word
            raise DatasetNotFoundError(f"cannot remove {relpath} from {self.root}: no such file")
        self._call("delete_object", relpath, Key=self._key(relpath))

    @contextlib.contextmanager
    def _lock(self, relpath: str) -> Iterator[None]:
        key = self._key(relpath)
        with _table_lock:
            thread_lock = _thread_locks.setdefault(f"{self.endpoint}/{self.bucket}/{key}", threading.Lock())
        with thread_lock:
            held = self._acquire_lock_object(relpath + _LOCK_SUFFIX)
            try:
                yield
            finally:
                if held:
                    with contextlib.suppress(ButlerError):
                        self._call("delete_object", relpath, Key=self._key(relpath + _LOCK_SUFFIX))

    def _acquire_lock_object(self, lockpath: str) -> bool:
        """Create the lock object with a conditional PUT, waiting for another holder; False when the
        server ignores the condition (the lock is then this process's only; logged)."""
        if self.endpoint in _unconditional_endpoints:
            return False
        key = self._key(lockpath)
        body = f"{os.getpid()}@{os.uname().nodename}".encode()
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    raise self._translated(exc, "put_object", lockpath) from None
                self._break_if_stale(lockpath)
                if time.monotonic() > deadline:
                    raise RepositoryError(f"lock {self._where(lockpath)} is held by another writer after "
                                          f"{LOCK_WAIT_SECONDS:.0f} s; remove it if its holder is gone") from None
                time.sleep(0.05)
                continue
            except _NETWORK_ERRORS as exc:
                raise StorageUnavailable(f"S3 put_object of {self._where(lockpath)} failed: {exc}") from None
            break
        if self.endpoint not in _conditional_endpoints:  # the first lock here: does the server honour it?
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
            except botocore.exceptions.ClientError:
                _conditional_endpoints.add(self.endpoint)
            else:
                _unconditional_endpoints.add(self.endpoint)
                _log.warning("S3 endpoint %s ignores If-None-Match: locks on %s hold within this process "
                             "only, not across processes", self.endpoint, self.root)
                self._call("delete_object", lockpath, Key=key)
                return False
        return True

    def _break_if_stale(self, lockpath: str) -> None:
        try:
            head = self._call("head_object", lockpath, Key=self._key(lockpath))
        except botocore.exceptions.ClientError:
            return  # released meanwhile
        age = time.time() - head["LastModified"].timestamp()
        if age > LOCK_STALE_SECONDS:
            _log.warning("breaking lock %s, %.0f s old: its holder is taken to be dead",
                         self._where(lockpath), age)
            self._call("delete_object", lockpath, Key=self._key(lockpath))

    # -- local copies -----------------------------------------------------------------------------

    def cachedLocalFile(self, path: str) -> str:
        """A local copy of the object at ``path`` that stays valid: a file in `cache_dir` named by the
        object's ETag, fetched again only when the ETag changes (one conditional GET per call).

        Raises
        ------
        DatasetNotFoundError
            When there is no object at ``path``.
        """
        relpath = self._check(path)
        directory = os.path.join(cache_dir(), self.bucket, *self._key(relpath).split("/")[:-1])
        name = posixpath.basename(relpath)
        index = os.path.join(directory, name + ".etag")
        known = None
        with contextlib.suppress(OSError), open(index, encoding="ascii") as stream:
            known = stream.read().strip()
        response = self._get(relpath, **({"IfNoneMatch": f'"{known}"'} if known else {}))
        if response is None:
            raise DatasetNotFoundError(f"no file {relpath} in {self.root} ({self._where(relpath)})")
        if response.get("NotModified") and known:
            cached = os.path.join(directory, f"{known}-{name}")
            if os.path.exists(cached):
                return cached
            response = self._get(relpath)
            if response is None:
                raise DatasetNotFoundError(f"no file {relpath} in {self.root} ({self._where(relpath)})")
        etag = str(response["ETag"]).strip('"')
        cached = os.path.join(directory, f"{etag}-{name}")
        write_bytes(cached, self._verified_body(response, relpath), root=cache_dir())
        write_bytes(index, etag.encode("ascii"), root=cache_dir())
        _log.debug("cached %s as %s", self._where(relpath), cached)
        return cached

    # -- old-style parents --------------------------------------------------------------------------

    def parentRoot(self) -> str | None:
        """None: an S3 repository records its parents in its cfg.

        Raises
        ------
        RepositoryError
            When the root holds an old-style ``_parent`` (a file, a copied
            directory, or a symbolic link as rclone uploads it,
            ``_parent.rclonelink``): refused on S3.
        """
        key = self._key(_PARENT_LINK)
        listing = self._call("list_objects_v2", _PARENT_LINK, Prefix=key, Delimiter="/", MaxKeys=100)
        names = [item["Key"] for item in listing.get("Contents", ())] + \
            [item["Prefix"].rstrip("/") for item in listing.get("CommonPrefixes", ())]
        if any(name in (key, key + ".rclonelink") for name in names):  # a file, a directory, an uploaded link
            raise RepositoryError(f"{self._where(_PARENT_LINK)}: old-style _parent links are not supported on "
                                  "S3; record the parents in repositoryCfg.yaml (open the repository as an "
                                  "output of a Butler whose inputs are its parents)")
        return None

    def _searchIn(self, relpath: str, searchParents: bool, literal: bool = False) -> list[str]:
        found = super()._searchIn(relpath, False, literal)
        if not found and searchParents:
            self.parentRoot()  # refuses an old-style parent rather than searching through it
        return found



class _VerifiedStream(io.RawIOBase):
    """The body of a large GET as a raw stream, its length and MD5 checked when its end is reached."""

    def __init__(self, storage: S3Storage, response: dict, relpath: str):
        self._storage, self._response, self._relpath = storage, response, relpath
        self._body = response["Body"]
        self._md5 = hashlib.md5()
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._storage._read_body(self._body, self._relpath, len(buffer))
        if not data:
            self._storage._check_body(self._response, self._relpath, self._size, self._md5.hexdigest)
            return 0
        self._md5.update(data)
        self._size += len(data)
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
