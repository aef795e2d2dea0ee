"""The evaluation protocol of ``protocol.md``: degrade a test set, restore it with a method, score it.

One :class:`EvalConfig` says what is measured; :func:`evaluate` returns a JSON-ready dict with per-image and
mean PSNR/SSIM, seconds per image (the method alone), and the protocol actually used (channel, shave,
quantisation, seeds), so that a number can always be traced back to how it was made.

Per task (``protocol.md`` §2):

* denoise: ``y = x + sigma/255 * n`` in float, not clipped; n from ``numpy.random.default_rng(seed + index)``.
* sr: Y channel; crop to a multiple of the scale, MATLAB-compatible bicubic down, 8-bit LR, bicubic up.
  Shave = scale.
* jpeg: Y (colour sets) or gray; Pillow JPEG at quality q. ``channel="rgb"``: colour JPEG (4:2:0).
* deblur: RGB; ``imfilter(x, k, 'conv', 'replicate')`` equivalent, then noise ``sigma`` (0-255 scale).
* inpaint: RGB; text overlay (``damage="text"``) or random pixel loss at a rate (``damage="0.5"``).

Restored images are clipped and rounded to 8 bits before scoring unless ``quantize=False``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rednet import baselines, degrade, io
from rednet.data import resolve_dataset
from rednet.inpaint import DAMAGE_THRESHOLD, FRAME_RUN, FRAME_WIDTH
from rednet.metrics import psnr, rgb_to_y, ssim
from rednet.tasks import TASK_NAMES, Corrupted, inpaint_damage, kernel_by_name, parse_damage, task_named

log = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "Corrupted",
    "EvalConfig",
    "corrupt",
    "evaluate",
    "inpaint_damage",
    "kernel_by_name",
    "parse_damage",
]

Task = Literal["denoise", "sr", "jpeg", "deblur", "inpaint"]
Channel = Literal["auto", "y", "gray", "rgb"]
TASKS: tuple[str, ...] = TASK_NAMES


@dataclass(frozen=True)
class EvalConfig:
    """What to measure.

    Attributes:
        task: the corruption.
        dataset: a benchmark name (``rednet.data.BENCHMARKS``) or a folder of images.
        method: a key of :data:`METHODS`.
        sigma: noise std on the 0-255 scale (denoise; extra noise for deblur).
        scale: SR factor.
        quality: JPEG quality 1-100.
        kernel: blur kernel name, "gaussian" (25x25, sigma 1.6), "gaussian-S" (25x25, sigma S pixels, e.g.
            "gaussian-2.4") or "disk" (radius 7).
        damage: inpainting's damage: "text", "decoys", "framed" or a pixel-loss rate such as "0.5".
        channel: "auto" = the task's protocol channel; or force "y", "gray" or "rgb".
        shave: border pixels ignored by the metrics; None = the protocol's (scale for sr, else 0).
        quantize: clip and round the restored image to 8 bits before scoring (protocol default).
        seed: base seed; image i (sorted order) uses ``seed + i``.
        data_root: where named sets live (see ``rednet.data.data_root``).
        limit: evaluate only the first ``limit`` images (None = all).
        model: method "rednet": a shipped model name or a weights file (.safetensors).
        ensemble: method "rednet": the 8-transform self-ensemble.
        bf16: method "rednet": bfloat16 autocast.
        balance: method "wiener": its regularisation weight (None = ``baselines.wiener``'s fixed rule).
        iterations: method "richardson-lucy": its number of iterations (None = 30).
        detector: method "rednet", task "inpaint": a damage model (e.g. "inpaint-detect") whose mask the
            mask-aware ``model`` fills, instead of the true mask: blind inpainting in two steps.
        damage_threshold, damage_grow, damage_frame, damage_frame_run, damage_tolerance: with
            ``detector``: see :func:`rednet.inpaint.find_damage` (``damage_tolerance`` in 8-bit levels;
            None = no colour filter).
        damage_ensemble: with ``detector``: average its probabilities over the 8 flips/rotations.
    """

    task: Task
    dataset: str
    method: str = "identity"
    sigma: float | None = None
    scale: int | None = None
    quality: int | None = None
    kernel: str | None = None
    damage: str | None = None
    channel: Channel = "auto"
    shave: int | None = None
    quantize: bool = True
    seed: int = 0
    data_root: str | None = None
    limit: int | None = None
    model: str | None = None
    ensemble: bool = False
    bf16: bool = False
    balance: float | None = None
    iterations: int | None = None
    detector: str | None = None
    damage_threshold: float = DAMAGE_THRESHOLD
    damage_grow: int = 0
    damage_frame: int = FRAME_WIDTH
    damage_frame_run: int = FRAME_RUN
    damage_tolerance: float | None = None
    damage_ensemble: bool = True

    def __post_init__(self) -> None:
        task = task_named(self.task)
        if getattr(self, task.level) is None:
            raise ValueError(f"task {self.task!r} needs --{task.level}")
        task.check_level(getattr(self, task.level))
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.task not in METHODS[self.method][1]:
            raise ValueError(f"method {self.method!r} does not do task {self.task!r}")
        if self.method == "rednet" and not self.model:
            raise ValueError("method 'rednet' needs --model NAME or --weights FILE")
        if self.detector and (self.method != "rednet" or not task.masks):
            raise ValueError("--detector is for --task inpaint --method rednet (with a mask-aware model)")

    @property
    def resolved_shave(self) -> int:
        if self.shave is not None:
            return self.shave
        return task_named(self.task).shave(self.scale)

    def resolved_channel(self, color: bool) -> str:
        """The channel the protocol scores for a set whose images are colour (``color``) or gray."""
        if self.channel != "auto":
            return self.channel
        return task_named(self.task).channel(color)


def corrupt(clean: Tensor, config: EvalConfig, seed: int) -> Corrupted:
    """Apply the configured corruption to one clean image (1, C, H, W) with the given seed."""
    task = task_named(config.task)
    return task.degrade(clean, task.level_of(config), generator=np.random.default_rng(seed))


Method = Callable[[Corrupted, EvalConfig], Tensor]


def _identity(c: Corrupted, config: EvalConfig) -> Tensor:
    return c.degraded


def _bm3d(c: Corrupted, config: EvalConfig) -> Tensor:
    return baselines.bm3d(c.degraded, float(config.sigma))


def _wiener(c: Corrupted, config: EvalConfig) -> Tensor:
    kernel = kernel_by_name(str(config.kernel))
    return baselines.wiener(c.degraded, kernel, sigma=float(config.sigma or 0), balance=config.balance)


def _richardson_lucy(c: Corrupted, config: EvalConfig) -> Tensor:
    return baselines.richardson_lucy(
        c.degraded, kernel_by_name(str(config.kernel)), num_iter=config.iterations or 30
    )


def _telea(c: Corrupted, config: EvalConfig) -> Tensor:
    return baselines.telea(c.degraded, c.mask)


def _biharmonic(c: Corrupted, config: EvalConfig) -> Tensor:
    return baselines.biharmonic(c.degraded, c.mask)


METHODS: dict[str, tuple[Method, tuple[str, ...]]] = {
    "identity": (_identity, TASKS),
    "bicubic": (_identity, ("sr",)),  # the SR input *is* the bicubic up-sampling of the LR image
    "bm3d": (_bm3d, ("denoise",)),
    "wiener": (_wiener, ("deblur",)),
    "richardson-lucy": (_richardson_lucy, ("deblur",)),
    "telea": (_telea, ("inpaint",)),
    "biharmonic": (_biharmonic, ("inpaint",)),
    "rednet": (_identity, TASKS),  # placeholder: evaluate() builds the model's function from the config
}
"""Method name -> (function, tasks it does)."""


def rednet_method(config: EvalConfig) -> Method:
    """The "rednet" method: the configured model (loaded once) through :func:`rednet.infer.restore`."""
    from rednet.infer import restore
    from rednet.inpaint import find_damage
    from rednet.zoo import load

    model = load(str(config.model))
    detector = load(config.detector) if config.detector else None

    def run(c: Corrupted, _config: EvalConfig) -> Tensor:
        mask = c.mask if model.config.mask_input else None  # a mask-aware model is given the true mask
        if detector is not None:  # ... unless a damage model finds the mask
            mask = find_damage(
                detector,
                c.degraded,
                threshold=config.damage_threshold,
                grow=config.damage_grow,
                frame=config.damage_frame,
                frame_run=config.damage_frame_run,
                tolerance=None if config.damage_tolerance is None else config.damage_tolerance / 255,
                ensemble=config.damage_ensemble,
                bf16=config.bf16,
            )
        return restore(model, c.degraded, ensemble=config.ensemble, bf16=config.bf16, mask=mask)

    return run


def load_clean(path: Path, channel: str) -> Tensor:
    """Read one test image as the protocol scores it: (1, C, H, W) in [0, 1], Y/gray (C = 1) or RGB."""
    if channel == "y":
        # A gray file (Set14 bridge.bmp) is its own Y, as in the classic SR evaluation code.
        return rgb_to_y(io.read_image(path)[0])
    return io.read_image(path, mode="gray" if channel == "gray" else "rgb")[0]


def _score_files(
    config: EvalConfig,
    files: list[tuple[int, Path]],
    channel: str,
    *,
    method: Method | None = None,
    save: Path | None = None,
    protect: tuple[Path, ...] = (),
    progress: bool = False,
    threads: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Corrupt, restore and score ``(index, file)`` pairs (image ``index`` uses seed ``config.seed + index``).

    Returns:
        (rows, failed): a row per image (``index``, name, psnr, ssim, seconds, and ``psnr_shave0`` for SR with
        a shave), a (name, error) entry per image that could not be read or corrupted.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    task = task_named(config.task)
    fn = method or (rednet_method(config) if config.method == "rednet" else METHODS[config.method][0])
    shave = config.resolved_shave
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"{config.method} {config.task}", unit="img")
    rows, failed = [], []
    for index, path in iterator:
        try:
            clean = load_clean(path, channel)
            corrupted = corrupt(clean, config, config.seed + index)
        except ValueError as e:  # io.ImageError, or an image too small for the corruption
            log.warning("skipping %s", e)
            failed.append({"name": path.name, "error": str(e)})
            continue
        start = time.perf_counter()
        with torch.inference_mode():
            restored = fn(corrupted, config)
        seconds = time.perf_counter() - start
        if config.quantize:
            restored = degrade.quantize(restored)
        if save is not None:
            io.write_image(save / f"{path.stem}.png", restored, overwrite=True, protect=protect)
        clean = corrupted.clean
        row = {
            "index": index,
            "name": path.name,
            "psnr": float(psnr(restored, clean, shave=shave)[0]),
            "ssim": float(ssim(restored, clean, shave=shave)[0]),
            "seconds": seconds,
        }
        if task.enlarges and shave:  # the paper's own SR code scores the whole image
            row["psnr_shave0"] = float(psnr(restored, clean)[0])
        rows.append(row)
    return rows, failed


def _score_in_processes(
    config: EvalConfig,
    files: list[tuple[int, Path]],
    channel: str,
    jobs: int,
    *,
    save: Path | None,
    protect: tuple[Path, ...],
) -> tuple[list[dict], list[dict]]:
    """:func:`_score_files` over ``jobs`` processes, each taking every ``jobs``-th image with
    ``cpu_count // jobs`` threads and loading the model once; rows come back in image order."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no fork after torch's thread pools have started
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        score = partial(_score_files, save=save, protect=protect, threads=threads)
        parts = [pool.submit(score, config, files[k::jobs], channel) for k in range(jobs)]
        results = [part.result() for part in parts]
    rows = sorted((r for part, _ in results for r in part), key=lambda r: r["index"])
    failed = [f for _, part in results for f in part]
    return rows, failed


def evaluate(
    config: EvalConfig,
    *,
    progress: bool = False,
    method: Method | None = None,
    save: str | Path | None = None,
    jobs: int = 1,
) -> dict:
    """Run ``config.method`` over ``config.dataset`` and score it.

    Args:
        config: what to measure.
        progress: show a progress bar on stderr (with ``jobs`` 1).
        method: override the method function (used by later issues' model methods and by tests); it must
            be 1 ``jobs``.
        save: a folder to write each restored image into, as ``STEM.png`` (8-bit, in the channel scored:
            Y or gray images for SR and JPEG on Y); never over a test image.
        jobs: images restored at once, each process with ``cpu_count // jobs`` threads; 1 = in this process.
            The scores are the same (image i always uses seed ``config.seed + i``).

    Returns:
        A JSON-ready dict: ``config``, ``protocol``, ``images`` (name, psnr, ssim, seconds; for SR with a
        shave also ``psnr_shave0``, the whole image as the paper's code scores it), ``mean`` (of each of
        those) and ``failed`` (name, error) for images that could not be read or corrupted; they are
        skipped.

    Raises:
        ValueError: if no image at all could be evaluated, ``jobs`` is below 1 or given with ``method``, or
            two images of the set share a name before the suffix while ``save`` is given.
    """
    if jobs < 1 or (jobs > 1 and method is not None):
        raise ValueError(f"jobs must be >= 1 (and 1 with a method function), got {jobs}")
    files, color = resolve_dataset(config.dataset, config.data_root)
    if config.limit is not None:
        files = files[: config.limit]
    if color is None:
        color = io.read_image(files[0])[0].shape[1] == 3
    channel = config.resolved_channel(color)
    folder, indexed = None if save is None else Path(save), list(enumerate(files))
    if folder is not None:
        stems = [f.stem for f in files]
        if twice := sorted({stem for stem in stems if stems.count(stem) > 1}):
            raise ValueError(f"--save: two test images would both be saved as {folder / twice[0]}.png")
    if jobs > 1:
        jobs = min(jobs, len(files))
        rows, failed = _score_in_processes(config, indexed, channel, jobs, save=folder, protect=tuple(files))
    else:
        rows, failed = _score_files(
            config, indexed, channel, method=method, save=folder, protect=tuple(files), progress=progress
        )
    if not rows:
        raise ValueError(f"{config.dataset}: no image could be evaluated ({failed[0]['error']})")
    for row in rows:
        del row["index"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "name"}
    protocol = {
        "channel": channel,
        "shave": config.resolved_shave,
        "quantized": config.quantize,
        "seeds": f"image i (sorted by name) uses seed {config.seed} + i",
        "noise_generator": "numpy.random.default_rng(seed).standard_normal",
        "images": len(rows),
    }
    protocol.update(task_named(config.task).notes)
    return {"config": asdict(config), "protocol": protocol, "mean": mean, "images": rows, "failed": failed}
