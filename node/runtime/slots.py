"""Training slots: nodes that share a machine take turns to train.

Several node processes on one machine (a test bed, the demo, the round benchmark) would otherwise
all train at once, each on its own thread: with more nodes than cores the kernel time-slices
them, and every switch evicts the others' weights and batches from the caches, so a round of
local training takes longer in all than training the nodes a few at a time. A node given
``--train-slots N`` holds one of ``N`` machine-wide slots while it trains, so at most ``N`` nodes
train at once (give every node on the machine the same ``N``, usually its number of cores).

A slot is an exclusive `fcntl.flock` on one of ``N`` lock files in a per-user directory. Waiters
queue on a further lock, the gate, so that only the first of them looks for a free slot while the
others sleep. The kernel drops a lock when the process holding it exits, however it exits, so a
node killed while training or waiting never leaves a slot or the gate taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from node.errors import ConfigError

POLL_S = 0.005  # seconds between looks for a free slot


def default_directory() -> Path:
    """The machine-wide lock directory of this user (under the system's temporary directory)."""
    return Path(tempfile.gettempdir()) / f"swarmchain-train-slots-{os.getuid()}"


class TrainingSlots:
    """``count`` machine-wide slots; `hold` waits for a free one and keeps it while training.

    Parameters
    ----------
    count
        How many nodes may train at once.
    directory
        Where the lock files live; every node that shares the slots uses the same directory.

    Raises
    ------
    ConfigError
        If ``count`` is below 1 or the directory cannot be created.
    """

    def __init__(self, count: int, directory: Path | None = None) -> None:
        if count < 1:
            raise ConfigError(f"train slots must be >= 1, got {count}")
        self.count = count
        self.directory = directory or default_directory()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the training-slot directory: {err}") from None

    @contextlib.contextmanager
    def hold(self) -> Iterator[float]:
        """Wait for a free slot and hold it for the block; yields the seconds spent waiting."""
        started = time.monotonic()
        files = [
            os.open(self.directory / f"slot-{k}", os.O_RDWR | os.O_CREAT, 0o600)
            for k in range(self.count)
        ]
        try:
            with _queue(self.directory / "gate"):
                while not any(_locked(fd) for fd in files):
                    time.sleep(POLL_S)
            yield time.monotonic() - started
        finally:
            for fd in files:  # closing a descriptor releases its lock
                os.close(fd)


@contextlib.contextmanager
def _queue(gate: Path) -> Iterator[None]:
    """Hold the gate: one waiter at a time looks for a free slot, the others sleep in the
    kernel instead of polling."""
    fd = os.open(gate, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _locked(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if no one holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
