"""Files written atomically, never over an input: a temporary file beside the target, then a rename or a
link (:func:`replace_atomically`); the temporaries' names, and :func:`remove_stale_temps`."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_TEMP_SUFFIX = ".rednet-tmp"


def _check_target(path: Path, overwrite: bool, protect: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse to write onto a directory, a protected file or (without overwrite) an existing file."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; give an output file name")
    for p in protect:
        if same_file(path, Path(p)):
            raise FileExistsError(input_message(path))
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(_exists_message(path))


def input_message(path: Path) -> str:
    """The message for refusing to write over an input file (whatever the flags)."""
    return f"{path}: is an input file; refusing to overwrite it (inputs are never replaced: write elsewhere)"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (same inode if both exist, else same resolved path)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def replace_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Make a file through ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    Readers never see a partial file and an interrupted write leaves the old file (if any) untouched; the
    temporary file (hidden, same suffix) is removed on failure. For non-image files: checkpoints, weights,
    JSON, Markdown, plots. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_atomically(path: Path, encode: Any, overwrite: bool) -> None:
    """Write via ``encode(file)`` to a temporary file beside ``path``, then move it into place."""
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            encode(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create an empty hidden file beside ``path`` (honouring the umask, unlike mkstemp's 0600), named
    ``.NAME.XXXXXXXX.rednet-tmp``: without an image suffix, so that no image lister takes it for an input."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: cannot create a temporary file for {path.name}")


def remove_stale_temps(outputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove the temporary files that writes of ``outputs`` killed mid-way (``kill -9``, power loss) left.

    Only this module's own pattern for these very outputs, ``.NAME.XXXXXXXX.rednet-tmp`` beside each
    (8 hex digits), is removed: other files, and the temporary files of other outputs, are left alone.
    Each folder is read once.

    Returns:
        The files removed.
    """
    names: dict[Path, set[str]] = {}
    for output in map(Path, outputs):
        names.setdefault(output.parent, set()).add(output.name)
    pattern = re.compile(rf"\.(.+)\.[0-9a-f]{{8}}{re.escape(_TEMP_SUFFIX)}")
    removed = []
    for folder, wanted in names.items():
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match and match.group(1) in wanted and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists, atomically where the file system allows."""
    try:
        os.link(tmp, path)  # fails if path appeared since we checked; the finally removes tmp
    except FileExistsError:
        raise FileExistsError(_exists_message(path)) from None
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        if path.exists():
            raise FileExistsError(_exists_message(path)) from None
        os.replace(tmp, path)


def _exists_message(path: Path) -> str:
    """The message for refusing to replace an existing file."""
    return f"{path}: already exists; pass overwrite=True to replace it"
