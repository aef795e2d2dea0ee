"""The checks of output paths before any work, shared by degrade and restore."""

from __future__ import annotations

import os
from pathlib import Path


def existing_paths(targets: list[Path]) -> list[Path]:
    """The targets that exist (a dangling link counts: writing would replace it)."""
    return [t for t in targets if t.exists() or t.is_symlink()]


def check_targets(pairs: list[tuple[Path, Path]], protected: list[Path]) -> None:
    """Refuse, before any work, (input, output) pairs whose output is also another pair's output, or is one
    of the ``protected`` files (the inputs: same file through any spelling, link or hard link)."""
    from rednet import io

    writers: dict[str, Path] = {}
    for source, target in pairs:
        key = os.path.normcase(os.path.abspath(target))
        if key in writers:  # two inputs, or one input's output and its mask
            raise ValueError(
                f"{target}: both {writers[key]} and {source} would be restored to this file; "
                "restore them in separate runs or to separate folders"
            )
        writers[key] = source

    def inode(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:  # missing (an input is then reported when read; an output is new)
            return None
        return st.st_dev, st.st_ino

    inputs = {inode(path) for path in protected} - {None}
    for _, target in pairs:
        if inode(target) in inputs:
            raise FileExistsError(io.input_message(target))
