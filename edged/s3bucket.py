"""The S3 adapter uploads and the cache share: the connection (static keys or STS), the mapping
of refusals to edged's errors, and the reads (probe, HEAD, GET, a resumed download).

Writes are edged.upload.s3's. Every call blocks: run it in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import certifi
import urllib3
from minio import Minio
from minio.credentials import AssumeRoleProvider, Provider
from minio.error import InvalidResponseError, S3Error

from edged.errors import EdgedError

SHA256_HEADER = "x-amz-meta-sha256"
_CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "InvalidClientTokenId",
    }
)


class UpstreamError(EdgedError):
    """The upstream refused or failed a request; retried later with backoff."""


class UpstreamUnreachable(UpstreamError, ConnectionError):
    """No connection to the upstream (venue link down, server stopped)."""


class CredentialsRefused(UpstreamError, PermissionError):
    """The upstream refused the credentials; check [upstream] access_key and secret_key_file."""


class UploadLost(UpstreamError):
    """The upstream no longer knows the multipart upload id (NoSuchUpload)."""


class ClockSkewed(UpstreamError):
    """The upstream refused the request time (this box's clock is wrong); wait, never fail."""


@dataclass(frozen=True)
class ObjectFacts:
    etag: str
    size: int
    sha256: str
    modified: float = 0.0  # Last-Modified as the upstream states it (unix seconds; 0: unknown)


class OncePerMinute(logging.Filter):
    """One warning a minute: urllib3 warns on every retry while the upstream is away."""

    def __init__(self, seconds: float = 60.0) -> None:
        super().__init__()
        self._seconds = seconds
        self._last = -seconds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        if now - self._last < self._seconds:
            return False
        self._last = now
        return True


def quiet_urllib3() -> None:
    """Rate-limit urllib3's retry warnings (idempotent)."""
    pool_logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, OncePerMinute) for f in pool_logger.filters):
        pool_logger.addFilter(OncePerMinute())


def session_policy(bucket: str, prefix: str | list[str]) -> str:
    """An STS session policy that allows writing and checking objects under `prefix` only."""
    prefixes = [prefix] if isinstance(prefix, str) else prefix
    objects = [f"arn:aws:s3:::{bucket}/{each}*" for each in prefixes]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:PutObject",
                        "s3:GetObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": objects,
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                    "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
                },
            ],
        },
        sort_keys=True,
    )


_SKEW_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired"})
# What servers say when they refuse a request's time without AWS's code (MinIO, Ceph, proxies).
_SKEW_MESSAGE = re.compile(
    r"request time.{0,40}(too|skew|far|large|differ)|time.{0,20}skew|clock.{0,20}skew", re.I
)
# minio-py makes these up for a refused HEAD, which carries no body: they say nothing.
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
_BODILESS = frozenset({("AccessDenied", "Access denied"), ("BadRequest", "Bad request")})
_ERROR_CODE = re.compile(r"<Code>\s*([A-Za-z0-9.]{1,64})\s*</Code>")
_ERROR_MESSAGE = re.compile(r"<Message>([^<]{0,200})</Message>")


def error_code(error: Exception) -> tuple[str, str] | None:
    """The S3 error code and message of a refusal, or None when the answer carries none.

    minio-py reads an error body only when it comes as application/xml; the same XML as text/xml
    (rclone's serve s3) is an InvalidResponseError holding the body, and must mean the same.
    """
    if isinstance(error, S3Error):
        return (error.code or "", error.message or "")
    if isinstance(error, InvalidResponseError):
        body = error._body or ""  # minio 7.2 keeps it only here (see its __reduce__)
        code = _ERROR_CODE.search(body)
        if code is None:
            return None
        message = _ERROR_MESSAGE.search(body)
        return (code.group(1), message.group(1).strip() if message else "")
    return None


def is_clock_refusal(code: str, message: str) -> bool:
    """Whether an S3 refusal is about the request's time (the box's clock), not the request."""
    return code in _SKEW_CODES or bool(_SKEW_MESSAGE.search(message))


def _clock_refused(what: str, code: str, message: str) -> ClockSkewed:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return ClockSkewed(
        f"{what}: upstream refused the request time ({code}: {message}); this box's clock "
        f"reads {now}: check that it is synchronized (NTP); uploads wait"
    )


def _raise_mapped(error: Exception, what: str) -> NoReturn:
    refusal = error_code(error)
    if refusal is not None:
        code, message = refusal
        if is_clock_refusal(code, message):
            raise _clock_refused(what, code, message) from error
        if code == "NoSuchUpload":
            raise UploadLost(f"{what}: the upstream no longer knows this upload") from error
        if code in _CREDENTIAL_CODES:
            raise CredentialsRefused(
                f"{what}: upstream refused the credentials ({code}); check [upstream] "
                "access_key, secret_key_file and sts_role_arn"
            ) from error
        raise UpstreamError(f"{what}: upstream said {code}: {message}") from error
    if isinstance(error, InvalidResponseError):  # one line, not the body of a proxy's page
        said = _SKEW_MESSAGE.search(error._body or "")
        if said is not None and error._code in (400, 403):
            raise _clock_refused(what, f"HTTP {error._code}", said.group(0)) from error
        raise UpstreamError(
            f"{what}: upstream answered HTTP {error._code} ({error._content_type}) without an "
            "S3 error code"
        ) from error
    if isinstance(error, urllib3.exceptions.HTTPError | OSError):
        raise UpstreamUnreachable(f"{what}: upstream unreachable: {error}") from error
    raise error


# A bound connection whose link stops acknowledging is given up after this long, instead of
# waiting out the read timeout with its last bytes stuck in the socket's buffer.
BOUND_USER_TIMEOUT_MS = 15_000
_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SocketOption = tuple[int, int, int | bytes]


def may_bind_to_device(interface: str) -> bool:
    """Whether this process may bind a socket to `interface` (SO_BINDTODEVICE: root, or
    CAP_NET_RAW, or Linux 5.7 and later for an unbound socket) and the interface exists."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode())
        except OSError:
            return False
    return True


def bound_socket_options(interface: str, to_device: bool) -> list[SocketOption]:
    """urllib3's socket options for connections that leave by `interface`: its defaults, the
    device binding when permitted, and a give-up time for a link that went silent."""
    options: list[SocketOption] = list(urllib3.connection.HTTPConnection.default_socket_options)
    if not interface:
        return options
    if to_device:
        options.append((socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode()))
    options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, BOUND_USER_TIMEOUT_MS))
    return options


# A body is written this much at a time: the socket's timeout (the connect timeout, on a new
# connection) then bounds a stall of the link, not the time a whole part takes to send.
SEND_CHUNK = 64 * 1024


class _PacedSending:
    """http.client writes a bytes body with one sendall, whose timeout bounds the whole of it:
    a 16 MiB part on a 4 Mbit/s link could never go in the 5 s connect timeout."""

    def send(self, data: Any) -> None:
        if isinstance(data, bytes | bytearray | memoryview) and len(data) > SEND_CHUNK:
            view = memoryview(data)
            for start in range(0, len(view), SEND_CHUNK):
                super().send(view[start : start + SEND_CHUNK])  # type: ignore[misc]
            return
        super().send(data)  # type: ignore[misc]


class _PacedHTTPConnection(_PacedSending, urllib3.connection.HTTPConnection):
    pass


class _PacedHTTPSConnection(_PacedSending, urllib3.connection.HTTPSConnection):
    pass


class _PacedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _PacedHTTPConnection


class _PacedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _PacedHTTPSConnection


class S3Bucket:
    """One bucket on S3 or MinIO, reached with static keys or short-lived STS credentials.

    `source_address` and `interface` make every connection leave by one uplink. The interface
    binding (SO_BINDTODEVICE) chooses the route: only routes through that interface are used, so
    the box needs a route to the upstream through each uplink (a default route per interface,
    any metric). It is applied only where permitted (`may_bind_to_device`); without it the
    source address alone chooses the route only where policy rules say so (`ip rule add from
    ADDRESS table T`, with a route by that interface in T): otherwise the kernel's main table
    picks the interface and the source address merely labels the packets.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        secure: bool,
        region: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        sts_role_arn: str = "",
        policy_prefix: str = "",
        connections: int = 4,
        read_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        source_address: str = "",
        interface: str = "",
    ) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.source_address = source_address
        self.interface = interface
        self.bound_to_device = bool(interface) and may_bind_to_device(interface)
        quiet_urllib3()
        http = urllib3.PoolManager(
            source_address=(source_address, 0) if source_address else None,
            socket_options=bound_socket_options(interface, self.bound_to_device),
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=connections,
            retries=urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
            cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        http.pool_classes_by_scheme = {"http": _PacedHTTPPool, "https": _PacedHTTPSPool}
        self._sts = (endpoint, secure, region, access_key, secret_key, sts_role_arn, http)
        self.policy_prefixes = [policy_prefix]
        if sts_role_arn:
            self._client = self._sts_client([policy_prefix])
        else:
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http,
            )

    def _sts_client(self, prefixes: list[str]) -> Minio:
        endpoint, secure, region, access_key, secret_key, role_arn, http = self._sts
        provider: Provider = AssumeRoleProvider(
            sts_endpoint=f"{'https' if secure else 'http'}://{endpoint}",
            access_key=access_key,
            secret_key=secret_key,
            policy=session_policy(self.bucket, prefixes),
            region=region,
            role_arn=role_arn,
            role_session_name="edged",
            http_client=http,
        )
        return Minio(endpoint, secure=secure, region=region, http_client=http, credentials=provider)

    def set_policy_prefixes(self, prefixes: list[str]) -> None:
        """Short-lived credentials for these prefixes from now on (the event changed)."""
        if prefixes == self.policy_prefixes:
            return
        self.policy_prefixes = list(prefixes)
        if self._sts[5]:
            self._client = self._sts_client(self.policy_prefixes)  # calls in flight keep the old

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            _raise_mapped(error, what)

    def _head(self, what: str, key: str, function: Any, *args: Any) -> Any:
        """A HEAD request, None when there is nothing at `key`; a refusal of it (which has no body
        to say why) is asked again as GET."""
        try:
            return function(*args)
        except S3Error as error:
            if error.code in _NOT_FOUND:
                return None
            if (error.code, error.message) in _BODILESS:
                self._explain(what, key)
            _raise_mapped(error, what)
        except Exception as error:
            _raise_mapped(error, what)

    def _explain(self, what: str, key: str) -> None:
        """GET one byte of `key` to hear why a HEAD was refused (a wrong clock, wrong keys)."""
        try:
            response = self._client.get_object(self.bucket, key, 0, 1)
        except Exception as error:
            refusal = error_code(error)
            if refusal is None or refusal in _BODILESS or refusal[0] in _NOT_FOUND:
                return  # nothing more to learn: the HEAD's answer stands
            _raise_mapped(error, what)
        response.close()
        response.release_conn()

    def probe(self) -> None:
        """A cheap request that proves the upstream answers and accepts the credentials."""
        what = f"probe {self.endpoint}"
        key = f"{self.policy_prefixes[0]}.edged-probe"
        exists = self._head(what, key, self._client.bucket_exists, self.bucket)
        if not exists:
            raise UpstreamError(
                f"bucket {self.bucket} does not exist on {self.endpoint}; create it or fix "
                "[upstream] bucket"
            )

    def read(self, key: str) -> bytes:
        """A small object whole (a manifest)."""
        response = self._call(f"get {key}", self._client.get_object, self.bucket, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def download(self, key: str, target: Path, size: int, progress: Callable[[int], None]) -> None:
        """Fetch `key` into `target`, resuming from the bytes it already holds (Range)."""
        offset = target.stat().st_size if target.exists() else 0
        if offset > size:
            target.unlink()
            offset = 0
        if offset == size:
            return
        response = self._call(
            f"get {key} from byte {offset}", self._client.get_object, self.bucket, key, offset
        )
        try:
            with target.open("ab") as handle:
                for chunk in response.stream(256 * 1024):
                    handle.write(chunk)
                    handle.flush()
                    progress(len(chunk))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            _raise_mapped(error, f"get {key}")
        finally:
            response.close()
            response.release_conn()

    def stat(self, key: str) -> ObjectFacts | None:
        """ETag, size and sha256 metadata of an object, or None when it does not exist."""
        result = self._head(f"stat {key}", key, self._client.stat_object, self.bucket, key)
        if result is None:
            return None
        metadata = result.metadata or {}
        return ObjectFacts(
            etag=str(result.etag).strip('"'),
            size=int(result.size or 0),
            sha256=str(metadata.get(SHA256_HEADER, "")),
            modified=result.last_modified.timestamp() if result.last_modified else 0.0,
        )
