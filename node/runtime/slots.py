"""Training slots: nodes that share a machine take turns to train.

Several node processes on one machine (a test bed, the round benchmark) would otherwise all train
at once, each on its own thread: with more nodes than cores the kernel time-slices them, and
every switch evicts the others' weights and batches from the caches, so a round of local
training takes longer in all than training the nodes a few at a time. A node given
``--train-slots N`` holds one of ``N`` machine-wide slots while it trains, so at most ``N`` nodes
train at once (give every node on the machine the same ``N``, usually its number of cores).

A slot is an exclusive `fcntl.flock` on one of ``N`` lock files in a directory of the user's own
(``$XDG_RUNTIME_DIR``, else the system's temporary directory): nodes of one user share the slots,
nodes of other users never see them. Waiters queue on a further lock, the gate: the one holding it
looks for a free slot every `POLL_S`, the others look for the gate every `GATE_POLL_S`, so that a
node asked to stop while it waits stops at once. The kernel drops a lock when the process holding
it exits, however it exits, so a node killed while training or waiting leaves nothing taken.
Lock files on NFS are emulated per process and do not coordinate threads; keep the directory
local.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from swarmchain.node.errors import ConfigError

# Seconds between the gate holder's looks for a free slot. Each look wakes the process: every
# 5 ms that cost 2.6% of a core on a 2-core VM, taken from the nodes that train; every 20 ms a
# freed slot waits 10 ms on average, a few times a round.
POLL_S = 0.02
GATE_POLL_S = 0.05  # seconds between the other waiters' looks for the gate
_OPEN = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW


class StopWaiting(Exception):
    """Raised by `TrainingSlots.hold` when the stop event is set before a slot is free."""


def default_directory() -> Path:
    """This user's lock directory: under ``$XDG_RUNTIME_DIR`` (private to the user) if set, else
    under the system's temporary directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "swarmchain-train-slots"
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
        If ``count`` is below 1, or the directory cannot be created or is not this user's
        alone (another user could hold every slot, or plant links in it).
    """

    def __init__(self, count: int, directory: Path | None = None) -> None:
        if count < 1:
            raise ConfigError(f"train slots must be >= 1, got {count}")
        self.count = count
        self.directory = directory or default_directory()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(self.directory)
        except OSError as err:
            raise ConfigError(f"cannot create the training-slot directory: {err}") from None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ConfigError(
                f"the training-slot directory {self.directory} is not a directory of this "
                "user's alone (mode 0700)",
                hint="remove it, or point XDG_RUNTIME_DIR or TMPDIR somewhere private",
            )

    @contextlib.contextmanager
    def hold(self, stop: threading.Event | None = None) -> Iterator[float]:
        """Wait for a free slot and hold it for the block; yields the seconds spent waiting.

        Parameters
        ----------
        stop
            Set by another thread (a signal handler) to give up waiting.

        Raises
        ------
        StopWaiting
            If ``stop`` is set before a slot is free.
        ConfigError
            If a lock file cannot be opened (one is not a regular file, or too many are open).
        """
        started = time.monotonic()
        files: list[int] = []
        try:
            try:
                for name in ["gate", *(f"slot-{k}" for k in range(self.count))]:
                    files.append(os.open(self.directory / name, _OPEN, 0o600))
            except OSError as err:
                raise ConfigError(f"cannot open a training-slot lock file: {err}") from None
            gate, slots = files[0], files[1:]
            _take_any([gate], GATE_POLL_S, stop)
            _take_any(slots, POLL_S, stop)
            fcntl.flock(gate, fcntl.LOCK_UN)  # the next waiter may look now
            yield time.monotonic() - started
        finally:
            for fd in files:  # closing a descriptor releases its lock
                os.close(fd)


@contextlib.contextmanager
def turn(slots: TrainingSlots | None, stop: threading.Event) -> Iterator[dict[str, float]]:
    """Hold one of ``slots`` for the block, if the node takes turns at all.

    Parameters
    ----------
    slots
        The machine's slots, or None for a node that trains whenever it likes.
    stop
        Set to give up waiting for a slot.

    Yields
    ------
    dict
        The TRAINED event's ``slot_wait_s`` (empty when the node does not take turns).

    Raises
    ------
    StopWaiting
        If ``stop`` is set before a slot is free.
    """
    if slots is None:
        yield {}
        return
    with slots.hold(stop) as waited:
        yield {"slot_wait_s": round(waited, 4)}


def _take_any(fds: list[int], poll_s: float, stop: threading.Event | None) -> None:
    """Take the exclusive lock on one of ``fds`` (the first free), looking every ``poll_s``."""
    while not any(_locked(fd) for fd in fds):
        if stop is None:
            time.sleep(poll_s)
        elif stop.wait(poll_s):
            raise StopWaiting


def _locked(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if no one holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
