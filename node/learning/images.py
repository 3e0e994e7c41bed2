"""Members' image folders: one sub-folder per class of PNG or JPEG files, preprocessed alike.

The task names the class folders (label ``i`` is ``classes[i]``), the input's channels and size,
and each channel's mean and standard deviation (`swarmchain.node.protocol.task.DataSpec`), so
every member feeds the network the same way: each image is converted to grey or RGB, resized
(bilinear) to the input's height and width, scaled to [0, 1] and normalised. A member may lack
some classes. A folder or file that does not fit is refused whole, naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from swarmchain.node.learning.data import MAX_DATA_BYTES, DataError, Dataset
from swarmchain.node.protocol.task import DataSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_files(root: Path, classes: tuple[str, ...] | None = None) -> list[tuple[Path, int]]:
    """Every image under ``root`` with its class index, in a fixed order.

    Parameters
    ----------
    root
        A folder holding one sub-folder per class.
    classes
        The class folder names, in label order; None: the sub-folders found, sorted.

    Raises
    ------
    DataError
        If ``root`` is no folder, a sub-folder is no class, or a file is no PNG or JPEG.
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of class folders")
    found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    names = tuple(found) if classes is None else classes
    for name in found:
        if name not in names or not (root / name).is_dir():
            raise DataError(f"{root / name}: not a class folder of the task (classes: {names})")
    out = []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue  # this member holds no examples of the class
        for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{path}: not a PNG or JPEG image")
            out.append((path, label))
    return out


def load_images(root: Path, spec: DataSpec, *, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """A member's image folders as examples of the task.

    Parameters
    ----------
    root
        A folder with one sub-folder per class (named as in ``spec.classes``).
    spec
        The task's data section: classes, ``input_shape`` ``(C, H, W)``, ``mean``, ``std``.
    max_bytes
        Bound on the files' total size.

    Returns
    -------
    Dataset
        ``x`` of shape ``(N, C, H, W)`` in float32, ``y`` the class indices.

    Raises
    ------
    DataError
        Naming the folder or file: the task names no classes, an unknown folder, a file that is
        no image or does not decode, too many bytes, or no images at all.
    """
    if not spec.classes:
        raise DataError(
            f"{root}: the task names no classes (task.data.classes), so it reads no image folders"
        )
    files = image_files(root, spec.classes)
    if not files:
        raise DataError(f"{root}: no PNG or JPEG images in its class folders")
    total = sum(path.stat().st_size for path, _ in files)
    if total > max_bytes:
        raise DataError(f"{root} holds {total} bytes of images, more than the {max_bytes} allowed")
    channels, height, width = spec.input_shape
    mean = np.asarray(spec.mean or [0.0] * channels, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std or [1.0] * channels, dtype=np.float32)[:, None, None]
    x = np.empty((len(files), channels, height, width), dtype=np.float32)
    for i, (path, _) in enumerate(files):
        x[i] = (_pixels(path, channels, height, width) - mean) / std
    y = np.array([label for _, label in files], dtype=np.int64)
    return Dataset(torch.from_numpy(x), torch.from_numpy(y))


def _pixels(path: Path, channels: int, height: int, width: int) -> npt.NDArray[np.float32]:
    """One image as ``(C, H, W)`` values in [0, 1]."""
    try:
        with Image.open(path) as image:
            image.load()
            fitted = image.convert("L" if channels == 1 else "RGB").resize(
                (width, height), Image.Resampling.BILINEAR
            )
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not a readable image: {err}") from None
    array = np.asarray(fitted, dtype=np.float32) / 255.0
    if channels == 1:
        return array[None]
    transposed: npt.NDArray[np.float32] = array.transpose(2, 0, 1)
    return transposed
