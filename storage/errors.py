"""Named errors of the storage package.

Each is a subclass of the project's subsystem bases in `swarmchain.node.errors`: reaching a store
and finding content are `StorageError`s; hostile bytes are `VerificationError`s. A block that does
not match its CID is both, so a node that rejects bad updates and an operator who fixes a broken
store each catch it with the base they already handle.
"""

from __future__ import annotations

from swarmchain.node.errors import StorageError, VerificationError


class InvalidCID(StorageError):
    """A string or byte sequence is not a CIDv1 this store understands."""


class BlockNotFound(StorageError):
    """No block with this CID is stored locally, and no peer supplied it."""

    def __init__(self, cid: str, *, hint: str | None = None) -> None:
        self.cid = cid
        super().__init__(f"block {cid} not found", hint=hint)


class TamperedBlock(StorageError, VerificationError):
    """A block's bytes do not hash to the digest in its CID."""

    def __init__(self, cid: str, source: str) -> None:
        self.cid = cid
        super().__init__(
            f"block {cid} from {source} does not match its CID (tampered or corrupted)",
            hint="discard it and fetch the block again from another source",
        )


class MalformedBlock(StorageError, VerificationError):
    """A dag-pb block matches its CID but is not a well-formed UnixFS file node."""

    def __init__(self, cid: str, reason: str) -> None:
        self.cid = cid
        super().__init__(f"block {cid} is malformed: {reason}")


class ReadBudgetExceeded(MalformedBlock):
    """Reading a DAG would load more blocks or bytes than its declared size allows."""

    def __init__(self, cid: str, limit: str, size: int) -> None:
        super().__init__(cid, f"reading it needs more than {limit} for {size} bytes of content")


class UnsupportedContent(StorageError):
    """The CID names content this store does not read (a directory, a symlink, another codec)."""


class ContentTooLarge(StorageError, VerificationError):
    """The content behind a CID is larger than the caller allowed."""

    def __init__(self, cid: str, size: int, max_size: int) -> None:
        self.cid = cid
        super().__init__(f"content {cid} holds at least {size} bytes, more than {max_size}")


class StoreUnavailable(StorageError):
    """A store (an IPFS daemon, a peer) cannot be reached or keeps failing."""


class StoreTimeout(StorageError):
    """A store did not answer within the configured timeout."""


class DeadlineExceeded(StoreTimeout):
    """A download ran past its total deadline, however slowly its bytes kept arriving."""


class UpdateTooLarge(VerificationError):
    """An encoded update is larger than the bound the task allows."""


class MalformedUpdate(VerificationError):
    """An encoded update is not a canonical safetensors file (truncated, pickle, bad header...)."""


class TensorNameMismatch(VerificationError):
    """An update's tensor names differ from the task spec's."""


class ShapeMismatch(VerificationError):
    """A tensor's shape differs from the task spec's."""


class DtypeMismatch(VerificationError):
    """A tensor's dtype differs from the task spec's."""


class NonFiniteValues(VerificationError):
    """A tensor holds NaN or infinite values."""


class MalformedEnvelope(VerificationError):
    """An envelope is not a canonical, well-typed signed manifest."""


class WrongSigner(VerificationError):
    """An envelope is signed by another key than the node's registered one."""


class BadSignature(VerificationError):
    """An envelope's signature does not cover its manifest (a field was modified)."""


class WrongSwarm(VerificationError):
    """An envelope was made for another swarm (chain id or coordinator): a cross-swarm replay."""


class WrongRound(VerificationError):
    """An envelope was made for another round: a replay."""


class WrongNode(VerificationError):
    """An envelope names another node than the one that revealed it."""


class NotARecipient(VerificationError):
    """This node is not among an encrypted blob's required recipients, so it cannot judge it."""


class BadEncryption(VerificationError):
    """An encrypted blob would not open alike for every required recipient (see `decrypt_blob`)."""


class MalformedCiphertext(VerificationError):
    """An encrypted blob is truncated, malformed, or fails authentication."""
