"""ONNX export and ONNX Runtime inference: run a RED-Net without PyTorch's autograd engine or its version.

* :func:`export_onnx` writes a model as float32 NCHW ONNX with dynamic batch, height and width (input
  ``"image"``, output ``"restored"``) and its :class:`~rednet.model.REDNetConfig` as JSON in the file's
  ``metadata_props`` (key ``"rednet_config"``), so that :class:`OnnxModel` needs no flags.
* :class:`OnnxModel` wraps an ``onnxruntime.InferenceSession`` (CPU) as a function of (N, C, H, W) tensors,
  the ``fn`` of :func:`rednet.infer.tiled` and :func:`rednet.infer.self_ensemble`.
* :func:`restore_onnx` is :func:`rednet.infer.restore` for an :class:`OnnxModel` (same channels only).

Exporter: the default, dynamo-based ``torch.onnx.export(..., dynamo=True)`` with ``torch.export.Dim.DYNAMIC``
on the batch, height and width axes. The strided model pads its input to a multiple of the stride inside
``forward`` (``if pad_h or pad_w: F.pad(..., mode="replicate")``): the exporter traces the branch taken by the
example input and records the pad amounts ``(-H) % stride`` as graph arithmetic on the input's shape. The
example input therefore has H and W that are *not* multiples of the stride, so the ``Pad`` node is in the
graph; for sizes that need no padding it pads by 0, which changes nothing. The TorchScript exporter
(``dynamo=False``) gives the same graph but is deprecated, and it is not needed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from rednet.extras import require
from rednet.infer import auto_tile, margin_for, self_ensemble, tiled
from rednet.io import replace_atomically
from rednet.model import REDNet, REDNetConfig

__all__ = ["CONFIG_KEY", "OnnxModel", "export_onnx", "restore_onnx"]

CONFIG_KEY = "rednet_config"
"""``metadata_props`` key of the model config (``REDNetConfig`` as JSON)."""
CARD_KEY = "rednet_card"
"""``metadata_props`` key of the model card (JSON), when the export was given one."""
INPUT_NAME = "image"
OUTPUT_NAME = "restored"


def _example_input(config: REDNetConfig) -> Tensor:
    """A (2, C, H, W) input whose H and W differ, exceed 1 and are not multiples of the stride.

    Distinct sizes keep the exporter from assuming H == W or a batch of 1; sizes off the stride grid make it
    record the padding branch of ``REDNet.forward`` (see the module docstring).
    """
    s = config.stride
    h = 8 * s + 1 if s > 1 else 17
    w = h + 2 * s if s > 1 else 19
    x = torch.rand(2, config.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    if config.mask_input:
        x[:, -1] = (x[:, -1] > 0.5).float()  # the known-pixel channel: known (1) and missing (0) pixels
    return x


def export_onnx(
    model: REDNet, path: str | Path, *, opset: int = 18, card: dict[str, Any] | None = None
) -> Path:
    """Export ``model`` to ONNX (float32, NCHW, any batch, height and width), atomically.

    The graph takes ``"image"`` (N, C, H, W) float32 in [0, 1] and returns ``"restored"`` (N, C, H, W)
    float32, not clamped (as ``REDNet.forward``). The model is exported from a float32 CPU copy, so its own
    device, dtype and mode are left alone.

    Args:
        model: the RED-Net to export (any device or dtype).
        path: the ``.onnx`` file to write; its folder is created. Written to a temporary file in the same
            folder and moved into place, so a failed export leaves no partial file.
        opset: ONNX opset version (18 runs on onnxruntime >= 1.14).
        card: model card (e.g. from :func:`rednet.zoo.load_weights`) stored as JSON under ``"rednet_card"``.

    Returns:
        The path written.

    Raises:
        ValueError: if ``path`` does not end in ``.onnx``.
    """
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX files must end in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    with torch.no_grad():
        program = torch.onnx.export(
            net,
            (_example_input(net.config),),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": dims},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    props = {CONFIG_KEY: json.dumps(asdict(net.config))}
    if card is not None:
        props[CARD_KEY] = json.dumps(card)
    onnx.helper.set_model_props(proto, props)
    return replace_atomically(path, lambda tmp: onnx.save_model(proto, str(tmp)))


class OnnxModel:
    """An exported RED-Net run by ONNX Runtime on the CPU: a function of (N, C, H, W) tensors.

    Attributes:
        path: the ``.onnx`` file.
        config: the model's :class:`~rednet.model.REDNetConfig`, read from the file's metadata.
        card: the model card stored at export (an empty dict when there is none).
        session: the ``onnxruntime.InferenceSession`` (``CPUExecutionProvider``).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        """Open an ONNX file written by :func:`export_onnx`.

        Args:
            path: the ``.onnx`` file.
            threads: intra-op threads of the session; None = ``torch.get_num_threads()``.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: one line naming the file, if it is not a readable ONNX model or has no rednet config.
        """
        ort = require("onnxruntime", "onnx", "running an ONNX model")

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no warnings on stderr from the runtime
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for damaged files
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ValueError(f"{self.path}: not a readable ONNX model ({first})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if CONFIG_KEY not in metadata:
            raise ValueError(
                f"{self.path}: no rednet model config in the file's metadata ({CONFIG_KEY!r}); "
                "export it with rednet.onnx.export_onnx"
            )
        try:
            self.config = REDNetConfig(**json.loads(metadata[CONFIG_KEY]))
            self.card: dict[str, Any] = json.loads(metadata.get(CARD_KEY, "{}"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{self.path}: bad rednet metadata ({e})") from None
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: Tensor) -> Tensor:
        """Run the network (no clamp, as ``REDNet.forward``).

        Args:
            x: (N, C, H, W) float images in [0, 1], C = ``config.channels`` (plus the mask, last, for a
                mask-aware model), on any device.

        Returns:
            (N, C, H, W) float32 on ``x``'s device; not clamped.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"x must be (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {self._input: array})
        return torch.from_numpy(out).to(x.device)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
        return f"OnnxModel({str(self.path)!r}, {fields})"


def restore_onnx(
    model: OnnxModel,
    x: Tensor,
    *,
    tile: int | Literal["auto"] | None = None,
    ensemble: bool = False,
    progress: bool = False,
) -> Tensor:
    """Restore a batch with an ONNX model: :func:`rednet.infer.restore` for images with the model's channels.

    Tiling is exact (:func:`rednet.infer.tiled` with the model's margin), so the result equals the
    whole-image result to float rounding.

    Args:
        model: an :class:`OnnxModel`.
        x: (N, C, H, W) float32 in [0, 1], C = ``model.config.channels``, any H and W (1x1 included).
        tile: output block side for tiled inference; None = one pass; "auto" = :func:`rednet.infer.auto_tile`.
        ensemble: average the 8 flips/rotations (8x slower).
        progress: progress bar over tiles.

    Returns:
        (N, C, H, W) float32, clamped to [0, 1], on ``x``'s device.

    Raises:
        ValueError: if ``x`` is not (N, C, H, W) with the model's channel count.
    """
    if model.config.mask_input:
        raise ValueError(
            "restore_onnx does not take a mask; call the mask-aware model itself on "
            "torch.cat([x, 1 - mask], 1)"
        )
    want = model.config.channels
    if x.ndim != 4 or x.shape[1] != want:
        raise ValueError(
            f"x must be (N, {want}, H, W) for this {want}-channel ONNX model, got {tuple(x.shape)}; "
            "convert the image, or use the PyTorch model (rednet.restore handles RGB with a gray model)"
        )
    fn = model
    if ensemble:

        def fn(t: Tensor) -> Tensor:
            return self_ensemble(model, t)

    if tile == "auto":
        tile = auto_tile(*x.shape[-2:])
    source = x.to(torch.float32)
    with torch.inference_mode():
        if tile is None:
            out = fn(source)
        else:
            # margin_for reads only ``.config``; an OnnxModel has one
            margin = margin_for(model)  # type: ignore[arg-type]
            out = tiled(
                fn, source, tile=int(tile), margin=margin, align=model.config.stride, progress=progress
            )
    return out.float().clamp(0, 1).to(x.device)
