"""The exception hierarchy: one root, one base per subsystem.

Every error a user can cause or meet carries a message built from the values involved and, where
there is one, a hint of what to do. The CLI turns any `SwarmchainError` into a one-line message;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SwarmchainError(Exception):
    """Root of every error Swarmchain raises on purpose.

    Parameters
    ----------
    message
        What went wrong, with the values involved.
    hint
        What the user can do about it, if anything.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)

    def one_line(self) -> str:
        """The message as one printable line: line breaks and other control or format
        characters (which a hostile value quoted in the message may carry) are escaped."""
        return "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(self)
        )


class ConfigError(SwarmchainError):
    """A configuration, task spec, deployment file or command-line value is missing or invalid."""


class ToolchainError(SwarmchainError):
    """An external tool (anvil, npm, solc) is missing, fails to start, or reports an error."""


class CompileError(ToolchainError):
    """The Solidity compiler rejected the sources; the message carries its diagnostics."""


class ChainError(SwarmchainError):
    """The chain cannot be reached, or a transaction or call failed."""


class StorageError(SwarmchainError):
    """The content store cannot be reached, or content is missing or does not match its CID."""


class VerificationError(SwarmchainError):
    """Bytes from a peer failed a check: hash, signature, size, shape, dtype or value bounds."""
