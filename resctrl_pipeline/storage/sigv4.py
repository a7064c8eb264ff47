"""AWS Signature Version 4 for S3 requests: pure functions, no I/O, no clock of their own.

The algorithm (AWS General Reference, "Signature Version 4 signing process"):

1. a *canonical request*: method, URI-encoded path, sorted query, lower-cased and
   sorted headers, the list of signed header names, and the payload's SHA-256;
2. a *string to sign*: algorithm, timestamp, credential scope
   (``<date>/<region>/<service>/aws4_request``) and the canonical request's SHA-256;
3. the *signature*: HMAC-SHA256 of the string to sign under a key derived from the
   secret by chained HMACs over date, region, service and ``aws4_request``.

The tests check these functions against botocore's signer and against a moto server
that verifies every signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

__all__ = ["ALGORITHM", "EMPTY_SHA256", "Credentials", "encode_path", "sign"]

ALGORITHM = "AWS4-HMAC-SHA256"
#: SHA-256 of an empty payload.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair, and the session token of temporary credentials.

    The secret and the token never appear in ``repr`` (and so in no log line).
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def encode_path(path: str) -> str:
    """URI-encode an S3 path for the request line and the canonical request.

    Every byte except the unreserved characters ``A-Z a-z 0-9 - _ . ~`` and the ``/``
    separators is percent-encoded, once (S3 does not double-encode).
    """
    return quote(path, safe="/-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers that authenticate one request without a query string.

    Args:
        method: HTTP method, e.g. ``PUT``.
        path: the already encoded path (:func:`encode_path`), as sent.
        headers: headers to sign; must include ``host`` (any case). Sent unchanged.
        payload_sha256: hex SHA-256 of the body; S3 rejects a body that does not match.
        credentials: the key pair (and session token) to sign with.
        region: the region of the endpoint, e.g. ``eu-west-1``.
        now: the request time; must be timezone-aware. S3 refuses requests more than
            15 minutes off its clock.
        service: the signing name of the service.

    Returns:
        ``headers`` plus ``x-amz-date``, ``x-amz-content-sha256``,
        ``x-amz-security-token`` (with a session token) and ``Authorization``.

    Raises:
        ValueError: ``headers`` has no ``host`` or ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not any(name.lower() == "host" for name in headers):
        raise ValueError("the host header must be signed")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = dict(headers)
    out["x-amz-date"] = stamp
    out["x-amz-content-sha256"] = payload_sha256
    if credentials.session_token:
        out["x-amz-security-token"] = credentials.session_token
    canonical = {name.lower(): " ".join(value.split()) for name, value in out.items()}
    names = sorted(canonical)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [
            method,
            path,
            "",  # no query string
            "".join(f"{name}:{canonical[name]}\n" for name in names),
            signed_headers,
            payload_sha256,
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    key = _hmac(("AWS4" + credentials.secret_access_key).encode("utf-8"), stamp[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out
