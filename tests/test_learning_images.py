"""Members' image folders: preprocessed as the task says, or refused whole, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_swarm
from PIL import Image

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.data import DataError
from swarmchain.node.learning.images import load_images
from swarmchain.node.protocol.task import DataSpec, TaskSpec
from swarmchain.node.runtime.config import load_node_data

GREY = DataSpec(dataset="scans", input_shape=(1, 4, 4), num_classes=2, classes=("healthy", "sick"))
RGB = DataSpec(
    dataset="photos",
    input_shape=(3, 2, 2),
    num_classes=2,
    classes=("healthy", "sick"),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.25, 1.0),
)


def _folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (8, 8)) -> Path:
    """Class folders of solid-colour PNGs and JPEGs: class k, image i has value 40 k + 10 i."""
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            value = 40 * k + 10 * i
            suffix = ".png" if i % 2 == 0 else ".jpg"
            Image.new("RGB", size, (value, value, value)).save(root / name / f"img{i}{suffix}")
    return root


def test_an_image_folder_is_converted_resized_and_normalised(tmp_path: Path) -> None:
    root = _folder(tmp_path / "site", {"healthy": 2, "sick": 3})

    grey = load_images(root, GREY)
    rgb = load_node_data(root, None, RGB)

    assert grey.x.shape == (5, 1, 4, 4) and rgb.x.shape == (5, 3, 2, 2)
    assert grey.y.tolist() == [0, 0, 1, 1, 1]
    assert grey.x[0].unique().tolist() == [0.0]  # a PNG of value 0, resized
    assert abs(float(grey.x[2].mean()) - 40 / 255) < 1e-6
    expected = (np.array([40 / 255] * 3) - 0.5) / np.array([0.5, 0.25, 1.0])
    assert np.allclose(rgb.x[2].mean(dim=(1, 2)).numpy(), expected, atol=1e-6)


def test_a_member_may_lack_a_class(tmp_path: Path) -> None:
    root = _folder(tmp_path / "site", {"sick": 2})
    assert load_images(root, GREY).y.tolist() == [1, 1]


def test_bad_folders_and_files_are_refused_naming_them(tmp_path: Path) -> None:
    root = _folder(tmp_path / "site", {"healthy": 1, "sick": 1})
    (root / "other").mkdir()
    with pytest.raises(DataError, match=r"site/other: not a class folder of the task"):
        load_images(root, GREY)
    (root / "other").rmdir()
    (root / "sick" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"sick/notes.txt: not a PNG or JPEG image"):
        load_images(root, GREY)
    (root / "sick" / "notes.txt").unlink()
    (root / "sick" / "broken.png").write_bytes(b"\x89PNG not an image")
    with pytest.raises(DataError, match=r"sick/broken.png: not a readable image"):
        load_images(root, GREY)
    with pytest.raises(DataError, match="names no classes"):
        load_images(root, DataSpec())
    with pytest.raises(ConfigError, match="reading it needs the task's classes"):
        load_node_data(root, None)
    with pytest.raises(DataError, match="no PNG or JPEG images"):
        load_images(_folder(tmp_path / "empty", {"healthy": 0}), GREY)


def test_the_task_checks_its_image_fields() -> None:
    assert TaskSpec.from_json(TaskSpec(data=RGB).to_json()) == TaskSpec(data=RGB)
    with pytest.raises(ConfigError, match="names 1 folders for 2 classes"):
        DataSpec(input_shape=(1, 4, 4), num_classes=2, classes=("a",))
    with pytest.raises(ConfigError, match="distinct plain folder names"):
        DataSpec(input_shape=(1, 4, 4), num_classes=2, classes=("a", "../b"))
    with pytest.raises(ConfigError, match="1 or 3 channels, not 2"):
        DataSpec(input_shape=(2, 4, 4), num_classes=2, classes=("a", "b"))
    with pytest.raises(ConfigError, match="std must not contain 0"):
        DataSpec(input_shape=(1, 4, 4), num_classes=2, classes=("a", "b"), std=(0.0,))


def test_data_split_splits_an_image_folder_into_class_folders(tmp_path: Path) -> None:
    root = _folder(tmp_path / "all", {"healthy": 6, "sick": 6})

    code, out, err = run_swarm(
        ["data", "split", "--from", str(root), "--parts", "2", "--out", str(tmp_path / "sites"),
         "--json"]
    )  # fmt: skip

    assert code == 0, err
    files = json.loads(out)["files"]
    assert [Path(f["path"]).name for f in files] == ["site-0", "site-1"]
    parts = [load_images(Path(f["path"]), GREY) for f in files if f["examples"]]
    assert sum(len(p) for p in parts) == 12
