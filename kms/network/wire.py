"""The replication wire format: JSON for control messages, length-prefixed frames for bundles.

A framed body is `KMSF1` followed by frames, each an 8-byte big-endian length and that many bytes.
The first frame is a JSON header; the others are gzipped bundles in the order the header lists.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from kms.errors import InvalidInput

MAGIC = b"KMSF1"
FRAMES_TYPE = "application/x-kms-frames"
API = "/replication/v1"
FEDERATION = "/federation/v1"
MAX_FRAMES = 10_000


def pack(header: dict[str, Any], blobs: list[bytes]) -> bytes:
    parts = [MAGIC]
    for blob in [json.dumps(header, separators=(",", ":")).encode("utf-8"), *blobs]:
        parts.append(struct.pack(">Q", len(blob)))
        parts.append(blob)
    return b"".join(parts)


def unpack(body: bytes) -> tuple[dict[str, Any], list[bytes]]:
    if not body.startswith(MAGIC):
        raise InvalidInput("not a framed replication body")
    frames: list[bytes] = []
    offset = len(MAGIC)
    while offset < len(body):
        if offset + 8 > len(body) or len(frames) >= MAX_FRAMES:
            raise InvalidInput("truncated or oversized framed body")
        (size,) = struct.unpack_from(">Q", body, offset)
        offset += 8
        if offset + size > len(body):
            raise InvalidInput("truncated frame")
        frames.append(body[offset : offset + size])
        offset += size
    if not frames:
        raise InvalidInput("framed body without a header")
    try:
        header = json.loads(frames[0])
    except ValueError as exc:
        raise InvalidInput("frame header is not JSON") from exc
    if not isinstance(header, dict):
        raise InvalidInput("frame header must be an object")
    return header, frames[1:]
