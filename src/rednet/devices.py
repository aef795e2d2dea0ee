"""Where models run and in which precision: the one chooser of ``rednet restore``, ``rednet serve``,
``rednet train`` and ``rednet bench``."""

from __future__ import annotations

import os

import torch

__all__ = ["choose_device", "init_process_group", "native_bf16", "use_bf16"]


def choose_device(name: str = "auto") -> torch.device:
    """The device for ``--device NAME``: "cpu"; "cuda", this process's GPU (``LOCAL_RANK`` under torchrun,
    else the first); or "auto", CUDA if present, else the CPU.

    Raises:
        ValueError: for "cuda" without a CUDA device, or another name.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(device: torch.device) -> None:
    """Join the torchrun process group from this process's device: NCCL on a GPU, made this process's
    current one first (NCCL's collectives run on the current GPU, which is otherwise GPU 0 for every
    rank), else gloo."""
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def use_bf16(device: torch.device, bf16: bool | None) -> bool:
    """``--bf16`` / ``--no-bf16`` as given; None: bf16 exactly where it is native (:func:`native_bf16`)."""
    return native_bf16(device) if bf16 is None else bf16


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 is fast on ``device``: any CUDA GPU, or a CPU whose oneDNN has bf16 kernels
    (AVX-512 or AMX on x86, BF16 on Arm).

    Elsewhere (an AVX2-only laptop, say) bf16 is emulated: on a 2-core AVX2 EPYC, ``rednet bench train``
    timed RED30 training at 0.44 patches/s in bf16 autocast against 5.50 in fp32. The defaults of
    ``rednet restore``, ``rednet serve``, ``train`` and ``bench_train`` follow this.
    """
    if device.type == "cuda":
        return True
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
