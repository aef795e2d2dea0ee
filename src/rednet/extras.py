"""Optional dependencies: which extra of the package brings a module, and a one-line error when it is missing.

The core install (``pip install rednet``) is what restoring needs: PyTorch, NumPy, Pillow, safetensors,
scikit-image, SciPy, OpenCV (16-bit colour files) and tqdm. The rest comes in extras, named in
``pyproject.toml``:

- ``web``: FastAPI, uvicorn, python-multipart, fastapi-offline (``rednet serve``);
- ``onnx``: onnx, onnxruntime, onnxscript (``rednet export onnx``, the onnxruntime benchmark);
- ``classical``: bm3d (the BM3D / CBM3D baselines of ``rednet eval`` and ``rednet report``);
- ``plot``: matplotlib (training curves, report plots, and the fonts of the text corruption);
- ``all``: every extra above; ``dev``: ``all`` plus the test tools.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """A module of an optional extra is not installed; the message is one line naming the extra."""


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or fail in one line naming the extra that installs it.

    Args:
        module: the module's import name, e.g. ``"fastapi"``.
        extra: the package extra that brings it, e.g. ``"web"``.
        needed_for: what needs it, for the message, e.g. ``"rednet serve"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: if the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{needed_for} needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'rednet[{extra}]' (or '.[{extra}]' in a clone)"
        ) from e
