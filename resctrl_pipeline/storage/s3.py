"""A minimal S3 client: one signed ``PUT`` of a local file, on the standard library.

Why not boto3: the writer needs exactly one operation, and boto3 with botocore adds
tens of megabytes to the image and seconds to the start of the writer process.
:mod:`.sigv4` signs; this module builds the address, streams the file and turns every
failure into an :class:`UploadError`.

Blocking by design: the :class:`~.uploader.Uploader` calls it from its own thread.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import urlsplit

from resctrl_pipeline.errors import ConfigError, PipelineError
from resctrl_pipeline.storage.sigv4 import Credentials, encode_path, sign

__all__ = [
    "S3Location",
    "S3Store",
    "UploadError",
    "credentials_from_environ",
    "region_from",
]

DEFAULT_REGION = "us-east-1"
_CHUNK = 1 << 20
_MAX_ERROR_BODY = 64 * 1024
# Bucket names as S3 accepts them (3-63 of lowercase letters, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# One segment of the key prefix: characters that need no special handling in keys.
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+-]{1,255}")
_REGION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


class UploadError(PipelineError):
    """An upload failed; the file stays in the spool and is retried.

    Attributes:
        reason: a short description for logs and ``/status``, e.g. ``HTTP 403
            AccessDenied`` or ``connection refused``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class S3Location:
    """Bucket and key prefix of ``output.dir = s3://bucket/prefix``.

    ``prefix`` has no leading or trailing slash and is empty for the bucket's root.
    """

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Split ``s3://bucket/a/b/`` into ``bucket`` and ``a/b``.

        The prefix is configuration, yet it becomes part of every object key, so it is
        checked rather than trusted: every segment between slashes must be non-empty,
        not ``.`` or ``..``, and made of ``[A-Za-z0-9!_.*'()=+-]``.

        Raises:
            ConfigError: (key ``output.dir``) not such a URL.
        """
        if not url.startswith("s3://"):
            raise ConfigError("output.dir", url, "expected s3://bucket/prefix")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ConfigError("output.dir", url, "not a valid bucket name")
        prefix = prefix.strip("/")
        for segment in prefix.split("/") if prefix else ():
            if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
                raise ConfigError(
                    "output.dir", url,
                    f"prefix segment {segment!r}: use [A-Za-z0-9!_.*'()=+-], no empty, "
                    ". or .. segments",
                )  # fmt: skip
        return cls(bucket, prefix)


def credentials_from_environ(environ: Mapping[str, str]) -> Credentials:
    """Credentials from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
    ``AWS_SESSION_TOKEN`` (optional), the variables every AWS tool reads.

    They come from the environment only, never from the configuration file, because
    the effective configuration is printed by ``resctrl-pipeline config`` and copied
    into the runtime directory; in Kubernetes they come from a Secret.

    Raises:
        ConfigError: (named after the variable) the key id or the secret is missing.
    """
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if not environ.get(name):
            raise ConfigError(
                name, "", "S3 output needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "in the environment",
            )  # fmt: skip
    return Credentials(
        environ["AWS_ACCESS_KEY_ID"],
        environ["AWS_SECRET_ACCESS_KEY"],
        environ.get("AWS_SESSION_TOKEN") or None,
    )


def region_from(configured: str, environ: Mapping[str, str]) -> str:
    """``output.s3_region`` (which ``AWS_REGION`` sets), else ``AWS_DEFAULT_REGION``,
    else ``us-east-1`` — the order the AWS tools use.

    Raises:
        ConfigError: ``AWS_DEFAULT_REGION`` is not a region name (the same rule as
            ``output.s3_region``: the region becomes part of every signature).
    """
    if configured:
        return configured
    fallback = environ.get("AWS_DEFAULT_REGION", "")
    if fallback and not _REGION.fullmatch(fallback):
        raise ConfigError(
            "output.s3_region", fallback, "from env AWS_DEFAULT_REGION: not a region name"
        )
    return fallback or DEFAULT_REGION


class S3Store:
    """Puts local files into one bucket, under keys the caller chooses.

    Args:
        location: bucket and prefix (the prefix is applied by the caller's key scheme).
        endpoint: ``http(s)://host[:port]``; empty means AWS
            (``https://s3.<region>.amazonaws.com``).
        region: the signing region.
        path_style: ``<endpoint>/<bucket>/<key>`` instead of ``<bucket>.<host>/<key>``.
            Virtual-hosted addressing cannot work with bucket names that contain dots
            over TLS (the certificate does not cover them), nor with IP addresses.
        credentials: what requests are signed with.
        timeout: seconds any one connect, send or receive may block.
        clock: wall clock for the signature date (injectable for tests).

    Raises:
        ConfigError: (key ``output.s3_endpoint``) the endpoint is not http(s)://host.
    """

    def __init__(
        self,
        location: S3Location,
        *,
        endpoint: str,
        region: str,
        path_style: bool,
        credentials: Credentials,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = urlsplit(endpoint.rstrip("/") or f"https://s3.{region}.amazonaws.com")
        if url.scheme not in ("http", "https") or not url.hostname or url.path or url.query:
            raise ConfigError("output.s3_endpoint", endpoint, "expected http(s)://host[:port]")
        self.location = location
        self._tls = url.scheme == "https"
        self._port = url.port
        netloc = url.netloc.lower()
        if path_style:
            self._connect_host, self._host = url.hostname, netloc
            self._base = f"/{location.bucket}/"
        else:
            # The bucket's own DNS name: it may lead elsewhere than the endpoint's.
            self._connect_host = f"{location.bucket}.{url.hostname}"
            self._host = f"{location.bucket}.{netloc}"
            self._base = "/"
        self._region = region
        self._credentials = credentials
        self._timeout = timeout
        self._clock = clock
        self._tls_context = ssl.create_default_context() if self._tls else None

    def describe(self, key: str) -> str:
        """``s3://bucket/key``, for log lines."""
        return f"s3://{self.location.bucket}/{key}"

    def put_file(self, key: str, path: str) -> int:
        """Upload the file at ``path`` as object ``key`` (replacing an existing one).

        The body is streamed in 1 MiB chunks and its SHA-256 is signed, so S3 rejects
        a body damaged in transit. Uploading the same file twice leaves one object.

        Returns:
            The bytes uploaded.

        Raises:
            FileNotFoundError: ``path`` vanished.
            UploadError: any network, TLS or HTTP failure, or a local read error.
        """
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, after the upload
        except FileNotFoundError:
            raise
        except OSError as err:
            raise UploadError(f"cannot read {os.path.basename(path)}: {err.strerror}") from err
        with f:
            try:
                size = os.fstat(f.fileno()).st_size
                digest = hashlib.sha256()
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    digest.update(chunk)
                f.seek(0)
            except OSError as err:
                raise UploadError(f"cannot read {os.path.basename(path)}: {err.strerror}") from err
            request_path = encode_path(self._base + key)
            headers = sign(
                method="PUT",
                path=request_path,
                headers={
                    "Host": self._host,
                    "Content-Length": str(size),
                    "Content-Type": "application/vnd.apache.parquet",
                },
                payload_sha256=digest.hexdigest(),
                credentials=self._credentials,
                region=self._region,
                now=datetime.fromtimestamp(self._clock(), UTC),
            )
            self._send(request_path, headers, f)
        return size

    def _send(self, path: str, headers: dict[str, str], body: BinaryIO) -> None:
        conn = self._connection()
        try:
            conn.request("PUT", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(_MAX_ERROR_BODY)
        except TimeoutError as err:
            raise UploadError(f"timed out after {self._timeout:g}s") from err
        except ssl.SSLError as err:
            raise UploadError(f"TLS: {err.reason or err}") from err
        except ConnectionRefusedError as err:
            raise UploadError("connection refused") from err
        except (OSError, http.client.HTTPException) as err:
            raise UploadError(f"{type(err).__name__}: {err}") from err
        finally:
            conn.close()
        if resp.status != 200:
            match = _ERROR_CODE.search(data)
            code = f" {match.group(1).decode()}" if match else ""
            raise UploadError(f"HTTP {resp.status}{code}")

    def _connection(self) -> http.client.HTTPConnection:
        if self._tls_context is not None:
            return http.client.HTTPSConnection(
                self._connect_host, self._port, timeout=self._timeout,
                context=self._tls_context, blocksize=_CHUNK,
            )  # fmt: skip
        return http.client.HTTPConnection(
            self._connect_host, self._port, timeout=self._timeout, blocksize=_CHUNK
        )
