"""Image sets: the benchmark sets of ``../shared/datasets`` by name, or any folder of images.

The data root is, in order: the ``root`` argument (CLI ``--data-root``), the ``REDNET_DATA`` environment
variable, ``../shared/datasets`` relative to the working directory, then ``../shared/datasets`` beside the
repository this package was installed from (editable installs). Files are taken in sorted name order, which is
also the order that fixes each image's seed (``protocol.md`` §1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rednet.io import is_image_file

__all__ = ["BENCHMARKS", "Benchmark", "data_root", "list_images", "resolve_dataset"]

ENV_VAR = "REDNET_DATA"


@dataclass(frozen=True)
class Benchmark:
    """One named test set: its folder under the data root and how the protocol reads it.

    Attributes:
        folder: path relative to the data root.
        color: True for colour images (read as RGB), False for gray sets (read as 1 channel).
        task: the task the set is a benchmark for (informational).
    """

    folder: str
    color: bool
    task: str


BENCHMARKS: dict[str, Benchmark] = {
    "Set12": Benchmark("Set12", color=False, task="denoise"),
    "BSD68": Benchmark("BSD68", color=False, task="denoise"),
    "CBSD68": Benchmark("CBSD68", color=True, task="denoise"),
    "Set5": Benchmark("Set5", color=True, task="sr"),
    "Set14": Benchmark("Set14", color=True, task="sr"),
    "B100": Benchmark("B100", color=True, task="sr"),
    "LIVE1": Benchmark("LIVE1", color=True, task="jpeg"),
    "Classic5": Benchmark("Classic5", color=False, task="jpeg"),
}


def _candidates(root: str | Path | None) -> list[tuple[Path, str]]:
    if root is not None:
        return [(Path(root), "--data-root")]
    if os.environ.get(ENV_VAR):
        return [(Path(os.environ[ENV_VAR]), ENV_VAR)]
    repo = Path(__file__).resolve().parents[2]
    return [
        (Path("..") / "shared" / "datasets", "the default ../shared/datasets"),
        (repo.parent / "shared" / "datasets", "the default ../shared/datasets beside the repository"),
    ]


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the benchmark sets.

    Raises:
        FileNotFoundError: with a message naming the path tried and how to set it.
    """
    candidates = _candidates(root)
    for path, _ in candidates:
        if path.is_dir():
            return path.resolve()
    path, source = candidates[0]
    raise FileNotFoundError(
        f"data root {path.resolve()} (from {source}) does not exist; "
        f"pass --data-root DIR or set {ENV_VAR}=DIR to the folder that holds Set12, BSD68, ..."
    )


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (the protocol's order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise FileNotFoundError(f"{folder}: no image files in this folder")
    return files


def resolve_dataset(
    name_or_dir: str | Path, root: str | Path | None = None
) -> tuple[list[Path], bool | None]:
    """Files of a named benchmark set or of a folder, and whether the set is colour.

    Args:
        name_or_dir: a name from :data:`BENCHMARKS` (case-insensitive) or a folder of images.
        root: data root for named sets (see :func:`data_root`).

    Returns:
        (files sorted by name, colour flag: True/False for named sets, None for a plain folder, whose images
        keep their own mode).
    """
    by_lower = {k.lower(): k for k in BENCHMARKS}
    key = by_lower.get(str(name_or_dir).lower())
    if key is not None and not Path(name_or_dir).is_dir():
        bench = BENCHMARKS[key]
        return list_images(data_root(root) / bench.folder), bench.color
    if Path(name_or_dir).is_dir():
        return list_images(name_or_dir), None
    raise FileNotFoundError(
        f"{name_or_dir}: not a folder and not a benchmark name (one of {', '.join(BENCHMARKS)})"
    )
