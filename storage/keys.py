"""A node's off-chain keys: Ed25519 signs update envelopes, X25519 receives encrypted updates.

Both public keys are registered on-chain when the node joins; the chain account key (which signs
transactions) is separate and lives with the node's chain configuration.

Keyfile format (JSON, one object, written with mode 0600)::

    {
      "format": "swarmchain-node-keys/1",
      "ed25519_seed": "<64 hex digits: the 32-byte Ed25519 seed>",
      "x25519_private": "<64 hex digits: the 32-byte X25519 private key>"
    }

The two keys are independent random keys (the X25519 key is not derived from the Ed25519 one), so
that an encryption key can be rotated without changing the node's signing identity.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from swarmchain.node.errors import ConfigError

KEYFILE_FORMAT = "swarmchain-node-keys/1"


@dataclass(frozen=True)
class NodeKeys:
    """A node's Ed25519 signing key and X25519 encryption key."""

    signing: SigningKey  # signs update envelopes
    encryption: PrivateKey  # opens update keys wrapped for this node

    @classmethod
    def generate(cls) -> Self:
        """Fresh random keys."""
        return cls(SigningKey.generate(), PrivateKey.generate())

    @property
    def signing_public(self) -> bytes:
        """The 32-byte Ed25519 public key peers verify envelopes with."""
        return bytes(self.signing.verify_key)

    @property
    def encryption_public(self) -> bytes:
        """The 32-byte X25519 public key members encrypt update keys to."""
        return bytes(self.encryption.public_key)

    def save(self, path: Path) -> None:
        """Write the keyfile, readable by its owner only.

        Raises
        ------
        ConfigError
            If the file already exists (keys are never overwritten).
        """
        body = {
            "format": KEYFILE_FORMAT,
            "ed25519_seed": bytes(self.signing).hex(),
            "x25519_private": bytes(self.encryption).hex(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(
                f"keyfile {path} already exists", hint="load it, or move it away first"
            ) from None
        with os.fdopen(fd, "w") as out:
            json.dump(body, out, indent=2)
            out.write("\n")

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a keyfile.

        Raises
        ------
        ConfigError
            If the file is missing, not JSON, of another format, or holds malformed keys.
        """
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"keyfile {path} not found", hint="create one with `NodeKeys.generate().save()`"
            ) from None
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"keyfile {path} is not JSON: {err}") from None
        if not isinstance(body, dict) or body.get("format") != KEYFILE_FORMAT:
            raise ConfigError(f"keyfile {path} is not in format {KEYFILE_FORMAT}")
        try:
            seed = bytes.fromhex(body["ed25519_seed"])
            private = bytes.fromhex(body["x25519_private"])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"keyfile {path} lacks a hex key: {err}") from None
        if len(seed) != 32 or len(private) != 32:
            raise ConfigError(f"keyfile {path}: keys must be 32 bytes each")
        return cls(SigningKey(seed), PrivateKey(private))
