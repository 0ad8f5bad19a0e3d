"""Objects in an S3 bucket through pyarrow's S3 client (pyarrow is already a dependency).

What codeflow keeps here is small and written whole: a manifest is replaced by one write
(S3 shows an object whole or not at all, so a reader never sees half of one), pending IDs are
separate objects (S3 has no append), and a version is an object's modification time and
size (:meth:`S3Objects.version`, one HEAD request).

>>> objects = S3Objects(settings.shared_store)                  # doctest: +SKIP
>>> objects.put("codeflow/_registry.json", b"{}")               # doctest: +SKIP
>>> objects.read("codeflow/_registry.json")                     # doctest: +SKIP
b'{}'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow.fs as pafs

from config.errors import StorageError
from config.storage import StoreLocation

_NO_BUCKET = ("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist")
_REFUSED = (
    "ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY", "InvalidAccessKeyId",
    "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch", "HTTP status 403", "403 Forbidden",
)  # fmt: skip
_UNREACHABLE = (
    "NETWORK_CONNECTION", "curlCode", "Could not connect", "error sending request",
    "onnection refused", "dns error", "timed out", "Timeout",
)  # fmt: skip
_MAX_DETAIL = 160


def is_outage(exc: BaseException) -> bool:
    """``exc`` says the bucket is missing, the credentials are refused or the endpoint is
    unreachable (not that one object or table is absent)."""
    text = str(exc)
    return any(code in text for code in (*_NO_BUCKET, *_REFUSED, *_UNREACHABLE))


def storage_error(location: StoreLocation, doing: str, exc: BaseException) -> StorageError:
    """``exc`` (pyarrow's or LanceDB's) as one line naming the setting to check."""
    text = str(exc)
    where = location.endpoint or "AWS S3"
    if any(code in text for code in _NO_BUCKET):
        message = (
            f"bucket {location.bucket!r} does not exist at {where}: create it, or fix "
            "CODEFLOW_STORE_URI"
        )
    elif any(code in text for code in _REFUSED):
        message = (
            f"{where} refused the credentials for bucket {location.bucket!r}: check "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION"
        )
    elif any(code in text for code in _UNREACHABLE):
        message = f"cannot reach the object store at {where}: check CODEFLOW_S3_ENDPOINT"
    else:
        detail = " ".join(text.split())[:_MAX_DETAIL]
        message = f"{doing} {location.uri} failed: {detail}"
    return StorageError(message, uri=location.uri)


def _filesystem(location: StoreLocation, timeout_s: float) -> pafs.S3FileSystem:
    options: dict[str, Any] = {
        "region": location.region or "us-east-1",
        "connect_timeout": timeout_s,
        "request_timeout": timeout_s * 3,
        "allow_bucket_creation": False,
        "allow_bucket_deletion": False,
    }
    if location.endpoint is not None:
        scheme, _, host = location.endpoint.partition("://")
        options.update(scheme=scheme, endpoint_override=host)
    secrets = {
        "access_key": location.access_key_id,
        "secret_key": location.secret_access_key,
        "session_token": location.session_token,
    }
    options.update({k: v.get_secret_value() for k, v in secrets.items() if v is not None})
    return pafs.S3FileSystem(**options)


class S3Objects:
    """Whole objects by key in the bucket of ``location`` (keys include its prefix)."""

    def __init__(self, location: StoreLocation, *, timeout_s: float = 5.0) -> None:
        self.location = location
        self._fs = _filesystem(location, timeout_s)

    def __repr__(self) -> str:
        return f"S3Objects({self.location.uri!r})"

    def _path(self, key: str) -> str:
        return f"{self.location.bucket}/{key}"

    def check(self) -> None:
        """One request: the bucket exists and the credentials open it (else one line)."""
        try:
            found = self._fs.get_file_info(self.location.bucket)
        except OSError as exc:
            raise storage_error(self.location, "opening", exc) from None
        if found.type == pafs.FileType.NotFound:
            raise storage_error(self.location, "opening", OSError(_NO_BUCKET[0]))

    def read(self, key: str) -> bytes | None:
        """The object's bytes; None if there is none."""
        try:
            with self._fs.open_input_stream(self._path(key)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(self.location, f"reading {key} in", exc) from None

    def version(self, key: str) -> tuple[int, int] | None:
        """(modification time in ns, size) of the object; None if there is none."""
        try:
            info = self._fs.get_file_info(self._path(key))
        except OSError as exc:
            raise storage_error(self.location, f"looking up {key} in", exc) from None
        if info.type != pafs.FileType.File:
            return None
        return int(info.mtime_ns or 0), int(info.size or 0)

    def put(self, key: str, data: bytes) -> None:
        """Create or replace the object (readers see the old or the new one, whole)."""
        try:
            with self._fs.open_output_stream(self._path(key)) as stream:
                stream.write(data)
        except OSError as exc:
            raise storage_error(self.location, f"writing {key} to", exc) from None

    def keys(self, prefix: str) -> list[str]:
        """Every object key under the folder ``prefix``, sorted."""
        selector = pafs.FileSelector(self._path(prefix), recursive=True, allow_not_found=True)
        try:
            found = self._fs.get_file_info(selector)
        except OSError as exc:
            raise storage_error(self.location, f"listing {prefix} in", exc) from None
        start = len(self.location.bucket) + 1
        return sorted(i.path[start:] for i in found if i.type == pafs.FileType.File)

    def delete(self, keys: Iterable[str]) -> None:
        """Remove the objects (missing ones are fine)."""
        for key in keys:
            try:
                self._fs.delete_file(self._path(key))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise storage_error(self.location, f"deleting {key} in", exc) from None
