"""Native decoders (libpng inside OpenCV, libtiff inside Pillow) print on the process's standard error, and
Pillow warns; while a file is decoded both go to the debug log instead, so that a bad file gives only rednet's
one-line error."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_messages_to_log(name: str) -> Iterator[None]:
    """Meanwhile, send what C libraries write on file descriptor 2, and Python warnings, to the debug log.

    libpng (inside OpenCV) and libtiff (inside Pillow) print on the process's standard error ("libpng
    error: IDAT: CRC error", "TIFFFillStrip: Read error on strip 0"), and Pillow warns ("Corrupt EXIF
    data"), before :func:`read_image` raises its own one-line error. Where descriptor 2 cannot be
    duplicated (closed), only the warnings are caught.
    """
    pillow = logging.getLogger("PIL")
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:
            saved = None
        if saved is not None:
            os.dup2(capture.fileno(), 2)
        # Pillow logs errors too ("More samples per pixel than can be decoded"), which Python's last-resort
        # handler prints when no logging is set up: they go to the debug log with the rest.
        handler, propagate = _ToDebugLog(name), pillow.propagate
        pillow.addHandler(handler)
        pillow.propagate = False
        try:
            yield
        finally:
            pillow.removeHandler(handler)
            pillow.propagate = propagate
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            capture.seek(0)
            printed = capture.read().decode(errors="replace")
            for message in [*printed.splitlines(), *(str(w.message) for w in caught)]:
                if message.strip():
                    logger.debug("%s: %s", name, message.strip())


class _ToDebugLog(logging.Handler):
    """Send a record (of Pillow's loggers) to this module's debug log, naming the file being read."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("%s: %s", self.name, record.getMessage())
