"""`swarm data split`: give each site of a trial swarm its own non-IID share of a dataset."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from swarmchain.node.cli import options
from swarmchain.node.cli.options import echo_json
from swarmchain.node.errors import ConfigError

app = typer.Typer(
    name="data",
    help="Prepare example data for nodes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def split(
    out: Annotated[
        Path,
        typer.Option("--out", help="Directory for site-0.npz, site-1.npz, ... (or .csv, .parquet)"),
    ],
    parts: Annotated[int, typer.Option("--parts", help="Number of sites.", min=1)] = 2,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="An .npz (x, y), a CSV or Parquet table (with --label), a folder of class "
            "folders of images, or an IDX images file to split; default: the bundled digits "
            "(without the default task's reference set).",
        ),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="IDX labels file (with IDX --from).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="The label column (with a table --from).")
    ] = None,
    alpha: Annotated[
        float, typer.Option("--alpha", help="Dirichlet label skew: small = few classes per site.")
    ] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    as_json: options.Json = False,
) -> None:
    """Split a dataset into label-skewed shares, one file per site (what --data reads): .npz
    parts of arrays and IDX images, tables of the same format as a table (rows kept whole), and
    class folders of copied images for an image folder.

    Examples:

        swarm data split --parts 2 --out data

        swarm data split --from mnist-train.npz --parts 4 --alpha 1.0 --out sites

        swarm data split --from patients.csv --label outcome --parts 3 --out sites
    """
    # Imported here, not at the top: they pull in torch, which `--help` does not need.
    import numpy as np

    from swarmchain.node.learning.data import save_npz, task_splits
    from swarmchain.node.learning.images import image_files
    from swarmchain.node.learning.partition import dirichlet_partition
    from swarmchain.node.learning.tables import (
        TABLE_SUFFIXES,
        class_labels,
        read_table,
        write_table,
    )
    from swarmchain.node.protocol.task import default_task
    from swarmchain.node.runtime.config import load_node_data

    if not alpha > 0:
        raise ConfigError(f"--alpha must be > 0, got {alpha}")
    written = []
    if source is not None and source.suffix.lower() in TABLE_SUFFIXES:
        if label is None:
            raise ConfigError(f"{source} is a table: name its label column with --label")
        table = read_table(source)
        classes = class_labels(table, label, source).astype(np.int64)
        shares = dirichlet_partition(classes, parts, alpha, seed, min_size=1)
        out.mkdir(parents=True, exist_ok=True)
        for i, share in enumerate(shares):
            path = out / f"site-{i}{source.suffix.lower()}"
            write_table(table.take(share), path)
            written.append({"path": str(path), "examples": len(share)})
    elif source is not None and source.is_dir():
        files = image_files(source)
        classes = np.array([label for _, label in files], dtype=np.int64)
        shares = dirichlet_partition(classes, parts, alpha, seed, min_size=1)
        for i, share in enumerate(shares):
            site = out / f"site-{i}"
            site.mkdir(parents=True, exist_ok=True)
            for k in share:
                path = files[k][0]
                (site / path.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, site / path.parent.name / path.name)
            written.append({"path": str(site), "examples": len(share)})
    else:
        pool = task_splits(default_task())[0] if source is None else load_node_data(source, labels)
        shares = dirichlet_partition(pool.y.numpy(), parts, alpha, seed, min_size=1)
        out.mkdir(parents=True, exist_ok=True)
        for i, share in enumerate(shares):
            path = out / f"site-{i}.npz"
            save_npz(pool.subset(share), path)
            written.append({"path": str(path), "examples": len(share)})
    if as_json:
        echo_json({"files": written})
    else:
        for w in written:
            typer.echo(f"{w['path']}: {w['examples']} examples")
