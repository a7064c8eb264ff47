"""S3 through ``pyarrow.fs.S3FileSystem``: the AWS SDK for C++ that pyarrow ships.

The writer already loads pyarrow, and its S3 filesystem brings what a hand-written
client would have to re-implement: the AWS default credential chain with refresh
(environment, shared config/credentials files and profiles, ``credential_process``,
web identity as IRSA uses, SSO, the container endpoint of ECS and EKS Pod Identity,
EC2 instance metadata — see ``docs/operations.md`` for the order), SigV4 signing,
multipart upload for large files, the SDK's retry strategy, custom CA bundles and
proxies. This module only maps our configuration onto it and turns its errors into
:class:`UploadError` with a short reason.

Blocking by design: the :class:`~.uploader.Uploader` calls :meth:`S3Store.put_file`
from its own thread (pyarrow releases the GIL while it waits for the network).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from resctrl_pipeline.errors import ConfigError, PipelineError

__all__ = [
    "MULTIPART_PART_BYTES",
    "S3Location",
    "S3Settings",
    "S3Store",
    "UploadError",
    "filesystem",
    "region_from",
]

DEFAULT_REGION = "us-east-1"
#: pyarrow uploads objects of at least this size in parts of this size (multipart);
#: smaller ones with one PUT. S3 allows 10,000 parts, so one object can hold ~97 GiB.
MULTIPART_PART_BYTES = 10 * 1024 * 1024
_COPY_CHUNK = 8 * 1024 * 1024
# Bucket names as S3 accepts them (3-63 of lowercase letters, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# One segment of the key prefix: characters that need no special handling in keys.
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+-]{1,255}")
_REGION = re.compile(r"[A-Za-z0-9_-]{1,64}")
# "AWS Error ACCESS_DENIED during PutObject operation: ..." as the SDK words failures.
_AWS_ERROR = re.compile(r"AWS Error (\w+) during (\w+) operation: ?(.*)", re.S)
_MAX_REASON = 200


class UploadError(PipelineError):
    """An upload failed; the file stays in the spool and is retried.

    Attributes:
        reason: a short description for logs and ``/status``, e.g.
            ``ACCESS_DENIED during PutObject: Access Denied``.
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
    def parse(cls, url: str, key: str = "output.dir") -> S3Location:
        """Split ``s3://bucket/a/b/`` into ``bucket`` and ``a/b``.

        The prefix is configuration, yet it becomes part of every object key, so it is
        checked rather than trusted: every segment between slashes must be non-empty,
        not ``.`` or ``..``, and made of ``[A-Za-z0-9!_.*'()=+-]``.

        Raises:
            ConfigError: (named ``key``) not such a URL.
        """
        if not url.startswith("s3://"):
            raise ConfigError(key, url, "expected s3://bucket/prefix")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(key, url, "not a valid bucket name")
        prefix = prefix.strip("/")
        for segment in prefix.split("/") if prefix else ():
            if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
                raise ConfigError(
                    key, url,
                    f"prefix segment {segment!r}: use [A-Za-z0-9!_.*'()=+-], no empty, "
                    ". or .. segments",
                )  # fmt: skip
        return cls(bucket, prefix)

    @property
    def path(self) -> str:
        """``bucket/prefix`` as pyarrow filesystems name it (no scheme)."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def region_from(configured: str, environ: Mapping[str, str]) -> str:
    """``output.s3_region`` (which ``AWS_REGION`` sets), else ``AWS_DEFAULT_REGION``,
    else ``us-east-1`` — the order the AWS tools use.

    Raises:
        ConfigError: ``AWS_DEFAULT_REGION`` is not a region name.
    """
    if configured:
        return configured
    fallback = environ.get("AWS_DEFAULT_REGION", "")
    if fallback and not _REGION.fullmatch(fallback):
        raise ConfigError(
            "output.s3_region", fallback, "from env AWS_DEFAULT_REGION: not a region name"
        )
    return fallback or DEFAULT_REGION


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach the store (``output.s3_*``); credentials are never part of it.

    Attributes:
        endpoint: ``http(s)://host[:port]``; empty means AWS.
        region: the signing region.
        path_style: with an ``endpoint``, address objects as ``<endpoint>/<bucket>/<key>``
            (true) or ``<bucket>.<endpoint-host>/<key>``. AWS itself is always
            addressed virtual-hosted.
        ca_bundle: PEM file of the CAs to trust for TLS; empty = the system's.
        proxy: ``http(s)://[user:password@]host:port``; empty = none.
        max_attempts: the SDK's attempts per request (standard retry strategy) before
            the upload fails and the spool's back-off takes over.
        connect_timeout: seconds to establish a connection.
        request_timeout: seconds a request may go without receiving a byte (on Linux
            the SDK's curl aborts a transfer slower than 1 byte/s for this long). The
            SDK's default, 3 s, is shorter than what a store may need to assemble a
            large multipart object.
    """

    endpoint: str = ""
    region: str = DEFAULT_REGION
    path_style: bool = False
    ca_bundle: str = ""
    proxy: str = ""
    max_attempts: int = 3
    connect_timeout: float = 10.0
    request_timeout: float = 60.0


def filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem with the AWS default credential chain.

    No keys are passed: the SDK finds them itself and refreshes temporary ones before
    they expire (see ``docs/operations.md``). Objects below
    :data:`MULTIPART_PART_BYTES` are written with one PUT, larger ones in parts.

    Raises:
        ConfigError: the endpoint is not ``http(s)://host[:port]`` (``output.s3_endpoint``),
            the proxy not ``http(s)://host:port`` (``output.s3_proxy``), or the CA bundle
            is not a readable file (``output.s3_ca_bundle``).
    """
    options: dict[str, object] = {}
    if settings.endpoint:
        url = urlsplit(settings.endpoint.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname or url.path or url.query:
            raise ConfigError(
                "output.s3_endpoint", settings.endpoint, "expected http(s)://host[:port]"
            )
        options.update(
            scheme=url.scheme, endpoint_override=url.netloc,
            force_virtual_addressing=not settings.path_style,
        )  # fmt: skip
    if settings.proxy:
        url = urlsplit(settings.proxy)
        if url.scheme not in ("http", "https") or not url.hostname or not url.port:
            raise ConfigError("output.s3_proxy", settings.proxy, "expected http(s)://host:port")
        options["proxy_options"] = settings.proxy
    if settings.ca_bundle:
        if not os.access(settings.ca_bundle, os.R_OK) or not os.path.isfile(settings.ca_bundle):
            raise ConfigError("output.s3_ca_bundle", settings.ca_bundle, "not a readable file")
        options["tls_ca_file_path"] = settings.ca_bundle
    return pafs.S3FileSystem(
        region=settings.region,
        connect_timeout=settings.connect_timeout,
        request_timeout=settings.request_timeout,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=settings.max_attempts),
        # One PUT for small objects instead of a three-request multipart upload.
        allow_delayed_open=True,
        default_metadata={"Content-Type": "application/vnd.apache.parquet"},
        **options,
    )


def upload_reason(err: BaseException) -> str:
    """A short, single-line reason for logs and ``/status`` from a pyarrow/SDK error.

    ``When initiating multiple part upload for key 'k' in bucket 'b': AWS Error
    ACCESS_DENIED during CreateMultipartUpload operation: Access Denied`` becomes
    ``ACCESS_DENIED during CreateMultipartUpload: Access Denied``.
    """
    text = str(err)
    match = _AWS_ERROR.search(text)
    if match:
        code, operation, detail = match.groups()
        text = f"{code} during {operation}: {detail.strip()}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


class S3Store:
    """Puts local files into one bucket, under keys the caller chooses.

    Args:
        location: bucket and prefix (the prefix is applied by the caller's key scheme).
        settings: endpoint, region, TLS, proxy and retries.

    Raises:
        ConfigError: see :func:`filesystem`.
    """

    def __init__(self, location: S3Location, settings: S3Settings) -> None:
        self.location = location
        self._fs = filesystem(settings)

    def describe(self, key: str) -> str:
        """``s3://bucket/key``, for log lines."""
        return f"s3://{self.location.bucket}/{key}"

    def put_file(self, key: str, path: str) -> int:
        """Upload the file at ``path`` as object ``key`` (replacing an existing one).

        Files of :data:`MULTIPART_PART_BYTES` and more go up as a multipart upload whose
        parts are sent in the background while the next ones are read. Uploading the
        same file twice leaves one object.

        pyarrow has no way to abort an upload from Python: closing the stream completes
        it. So a local read error mid-file completes a truncated object, which is
        deleted at once; the file stays in the spool and its retry replaces the object
        anyway. A network failure leaves an incomplete multipart upload on the store,
        which is never visible as an object (a lifecycle rule removes its parts, see
        ``docs/operations.md``).

        Returns:
            The bytes uploaded.

        Raises:
            FileNotFoundError: ``path`` vanished.
            UploadError: any network, TLS, credential or HTTP failure, or a local read
                error.
        """
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise
        except OSError as err:
            raise UploadError(f"cannot read {os.path.basename(path)}: {err.strerror}") from err
        target = f"{self.location.bucket}/{key}"
        size = 0
        read_error: OSError | None = None
        with src:
            try:
                dst = self._fs.open_output_stream(target)
                with dst:
                    while True:
                        try:
                            chunk = src.read(_COPY_CHUNK)
                        except OSError as err:
                            read_error = err
                            break
                        if not chunk:
                            break
                        dst.write(chunk)
                        size += len(chunk)
            except OSError as err:
                raise UploadError(upload_reason(err)) from err
        if read_error is not None:
            with contextlib.suppress(OSError):
                self._fs.delete_file(target)
            name = os.path.basename(path)
            raise UploadError(f"cannot read {name}: {read_error.strerror}") from read_error
        return size
