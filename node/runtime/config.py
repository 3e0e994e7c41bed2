"""A node's configuration: where the swarm is, who the node is, and how it runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from eth_account import Account

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.data import Dataset, load_idx, load_npz
from swarmchain.node.learning.images import load_images
from swarmchain.node.learning.tables import TABLE_SUFFIXES, load_table
from swarmchain.node.protocol.task import DataSpec
from swarmchain.node.runtime.local import AttackPlan

DEFAULT_RPC = "http://127.0.0.1:8545"


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class NodeConfig:
    """Everything `SwarmNode` needs; every field but the first three has a default."""

    deployment: Path  # the deployment file `swarm deploy` wrote
    private_key: str  # the member's chain account key (0x + 64 hex digits)
    data: Path  # the node's examples: an .npz (x, y) or an IDX images file
    labels: Path | None = None  # the IDX labels file (IDX data only)
    rpc_url: str = DEFAULT_RPC  # JSON-RPC endpoint of the swarm's chain
    store: Path | None = None  # embedded store directory (None: ~/.swarmchain/store)
    ipfs_api: str | None = None  # a Kubo RPC URL; when set it is the store
    peers: tuple[str, ...] = ()  # trustless gateways the embedded store fetches missing blocks from
    serve: str | None = None  # "host:port" to serve this node's blocks to peers (per-node stores)
    journal: Path | None = None  # journal directory (None: ~/.swarmchain/nodes/<address>)
    threads: int | None = None  # torch intra-op and NumPy BLAS threads (None: their defaults)
    device: str = "auto"  # where to train: "cpu", "cuda", or "auto" (CUDA when torch sees one)
    amp: bool = False  # train in bfloat16 autocast (CUDA only)
    train_slots: int | None = None  # at most this many nodes on the machine train at once
    attack: AttackPlan | None = None  # forge updates with this attack (tests and demos)
    encrypt: bool = False  # encrypt updates for the round's members (auditors cannot read them)
    stake: int | None = None  # tokens to stake when joining (None: the swarm's minimum)
    min_members: int = 1  # open the first counted round once this many members are active
    until_round: int | None = None  # exit once this round is closed and settled (None: forever)
    poll_s: float = 0.25  # seconds between looks at the chain
    deadline_margin_s: float = 1.0  # do not send a phase's transaction this close to its deadline
    stagger_s: float = 0.4  # per member index: delay before a shared duty (finalize, failRound)

    def __post_init__(self) -> None:
        try:
            Account.from_key(self.private_key)
        except (ValueError, TypeError):
            raise ConfigError(
                "the node key is not a valid private key (0x + 64 hex digits)"
            ) from None
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.train_slots is not None and self.train_slots < 1:
            raise ConfigError(f"train_slots must be >= 1, got {self.train_slots}")
        if self.min_members < 1:
            raise ConfigError(f"min_members must be >= 1, got {self.min_members}")
        if self.poll_s <= 0 or self.deadline_margin_s < 0 or self.stagger_s < 0:
            raise ConfigError("poll_s must be > 0; deadline_margin_s and stagger_s >= 0")

    @property
    def address(self) -> str:
        """The member's checksummed account address."""
        return str(Account.from_key(self.private_key).address)

    def train_device(self) -> torch.device:
        """Where this node trains: `device`, with ``auto`` resolved.

        Raises
        ------
        ConfigError
            If ``cuda`` was asked for and torch sees no CUDA GPU, or mixed precision on a CPU.
        """
        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise ConfigError(
                "--device cuda: torch sees no CUDA GPU on this machine",
                hint="use --device cpu or auto, or install a CUDA build of torch",
            )
        device = torch.device("cuda" if self.device != "cpu" and cuda else "cpu")
        if self.amp and device.type != "cuda":
            raise ConfigError("--amp trains in bfloat16 on a CUDA GPU; this node trains on the CPU")
        return device

    def journal_dir(self) -> Path:
        """The journal directory: `journal`, or ``~/.swarmchain/nodes/<address>``."""
        if self.journal is not None:
            return self.journal
        return Path.home() / ".swarmchain" / "nodes" / self.address


def read_private_key(value: str) -> str:
    """A private key given inline (``0x...``) or as the path of a file holding one.

    Raises
    ------
    ConfigError
        If the value is neither a key nor a readable file holding one.
    """
    text = value.strip()
    if not text.startswith("0x"):
        try:
            text = Path(text).read_text().strip()
        except OSError as err:
            raise ConfigError(
                f"--key is neither a 0x private key nor a readable key file: {err.strerror}"
            ) from None
        except UnicodeEncodeError:
            raise ConfigError(
                "--key is neither a 0x private key nor a file name this system can encode"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                "--key names a file that is not UTF-8 text, so not a key file"
            ) from None
    try:
        Account.from_key(text)
    except (ValueError, TypeError):
        raise ConfigError("--key is not a valid private key (0x + 64 hex digits)") from None
    return text


def load_node_data(data: Path, labels: Path | None, spec: DataSpec | None = None) -> Dataset:
    """Load the node's examples: an ``.npz`` with ``x`` and ``y``, a CSV or Parquet table read
    through the task's columns, a folder of class folders of images preprocessed as the task
    says (both need `spec`), or IDX images plus labels.

    Raises
    ------
    ConfigError
        If the files are missing or malformed, a table or image folder comes without the task,
        or IDX images come without labels.
    """
    if data.suffix == ".npz":
        return load_npz(data)
    if data.is_dir():
        if spec is None:
            raise ConfigError(f"{data} is an image folder: reading it needs the task's classes")
        return load_images(data, spec)
    if data.suffix.lower() in TABLE_SUFFIXES:
        if spec is None:
            raise ConfigError(f"{data} is a table: reading it needs the task's columns")
        return load_table(data, spec)
    if labels is None:
        raise ConfigError(
            f"{data} is not an .npz file or a table, so it is read as IDX images and needs --labels"
        )
    return load_idx(data, labels)
