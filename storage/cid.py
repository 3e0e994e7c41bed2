"""CIDv1 with SHA-256 multihashes, in the canonical base32 string form.

A CID is ``varint(version=1) varint(codec) varint(0x12) varint(32) digest``, written as ``b`` plus
RFC 4648 base32 (lower case, no padding): the strings Kubo prints for
``ipfs add --cid-version=1 --raw-leaves`` (``bafkrei…`` for raw blocks, ``bafybei…`` for dag-pb).
Only what this project stores is accepted: version 1, the raw and dag-pb codecs and sha2-256.

References: the multiformats specs for unsigned-varint, multihash, multicodec, multibase and CID
(https://github.com/multiformats).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Self

from swarmchain.storage.errors import InvalidCID

RAW = 0x55  # multicodec: raw bytes, a file's leaf chunk
DAG_PB = 0x70  # multicodec: MerkleDAG protobuf, a UnixFS interior node
SHA2_256 = 0x12  # multihash function code
DIGEST_SIZE = 32  # bytes of a SHA-256 digest

_CODECS = {RAW: "raw", DAG_PB: "dag-pb"}
# version 1, codec, sha2-256, 32 bytes: every field fits one varint byte
_PREFIXES = {codec: bytes((1, codec, SHA2_256, DIGEST_SIZE)) for codec in _CODECS}
_MAX_VARINT_BYTES = 9  # unsigned-varint caps values at 63 bits


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as an unsigned LEB128 varint (also protobuf's varint)."""
    if 0 <= value < 0x80:
        return bytes((value,))
    if value < 0:
        raise ValueError(f"varints are unsigned, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """Decode a minimal unsigned varint at `offset`.

    Parameters
    ----------
    data
        The buffer.
    offset
        Where the varint starts.

    Returns
    -------
    tuple[int, int]
        The value and the offset just past it.

    Raises
    ------
    ValueError
        If the varint is truncated, longer than 9 bytes, or not minimally encoded.
    """
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise ValueError("varint is not minimally encoded")
            return value, offset + i + 1
    raise ValueError(f"varint longer than {_MAX_VARINT_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class CID:
    """A CIDv1 naming a block by the SHA-256 of its bytes."""

    codec: int  # RAW or DAG_PB
    digest: bytes  # SHA-256 of the block's exact bytes, 32 bytes

    @classmethod
    def of(cls, codec: int, block: bytes | memoryview) -> Self:
        """The CID of `block` under `codec`."""
        return cls(codec, hashlib.sha256(block).digest())

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> Self:
        """Parse a binary CID (as found in dag-pb links).

        Raises
        ------
        InvalidCID
            If it is not a CIDv1 with a supported codec and a sha2-256 multihash.
        """
        try:
            version, pos = decode_varint(raw, 0)
            codec, pos = decode_varint(raw, pos)
            hash_code, pos = decode_varint(raw, pos)
            length, pos = decode_varint(raw, pos)
        except ValueError as err:
            raise InvalidCID(f"binary CID {bytes(raw).hex()} is malformed: {err}") from None
        if version != 1:
            raise InvalidCID(
                f"CID version {version} is not supported",
                hint="use CIDv1 (`ipfs cid base32 CID` converts a CIDv0)",
            )
        if codec not in _CODECS:
            raise InvalidCID(f"CID codec 0x{codec:x} is not supported (raw or dag-pb only)")
        if hash_code != SHA2_256 or length != DIGEST_SIZE:
            raise InvalidCID(
                f"CID multihash 0x{hash_code:x}/{length} is not supported (sha2-256/32 only)"
            )
        digest = bytes(raw[pos:])
        if len(digest) != DIGEST_SIZE:
            raise InvalidCID(f"CID digest holds {len(digest)} bytes, expected {DIGEST_SIZE}")
        return cls(codec, digest)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the canonical string form (``b`` + lower-case base32).

        Raises
        ------
        InvalidCID
            If the string is not a supported CIDv1 in base32.
        """
        if text.startswith("Qm"):
            raise InvalidCID(
                f"{text!r} is a CIDv0", hint="convert it with `ipfs cid base32 CID` to CIDv1"
            )
        body = text[1:]
        if not text.startswith("b") or body != body.lower() or not body.isascii():
            raise InvalidCID(f"{text!r} is not a CIDv1 in lower-case base32 (b…)")
        padded = body.upper() + "=" * (-len(body) % 8)
        try:
            raw = base64.b32decode(padded)
        except binascii.Error:
            raise InvalidCID(f"{text!r} is not valid base32") from None
        cid = cls.from_bytes(raw)
        if str(cid) != text:
            raise InvalidCID(f"{text!r} is not in canonical form")
        return cid

    def to_bytes(self) -> bytes:
        """The binary form."""
        return _PREFIXES[self.codec] + self.digest

    def matches(self, block: bytes | memoryview) -> bool:
        """Whether `block` hashes to this CID's digest."""
        return hashlib.sha256(block).digest() == self.digest

    def __str__(self) -> str:
        return "b" + base64.b32encode(self.to_bytes()).decode("ascii").lower().rstrip("=")

    def __repr__(self) -> str:
        return f"CID({self})"
