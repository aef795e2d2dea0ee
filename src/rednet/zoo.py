"""Exported weights: fp16 ``.safetensors`` files that carry their model config and model card.

A weights file stores the model's tensors in float16 and, in its metadata, ``config`` (the
``REDNetConfig`` as JSON) and ``card`` (the model card as JSON), so that loading needs no flags. The card is
also written beside it as ``NAME.json`` for people to read, with the ``sha256`` of the weights file added
(a file cannot hold its own digest): loading checks it when that card is there, so a truncated or damaged
file is a one-line error, not a traceback or a wrong result. Loading never downloads anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rednet.io import replace_atomically
from rednet.model import REDNet, REDNetConfig
from rednet.tasks import task_named

__all__ = [
    "ANY_TASK",
    "WEIGHTS",
    "ModelEntry",
    "any_damage_models",
    "card_summary",
    "card_tasks",
    "default_model",
    "load",
    "load_weights",
    "read_card",
    "read_weights",
    "save_weights",
    "sha256_file",
    "verify_weights",
    "write_card",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    """A shipped model: its file in ``src/rednet/weights/`` and what it restores.

    Attributes:
        file: weights file name (fp16 safetensors; its card is the ``.json`` beside it).
        task: the task it restores, or :data:`ANY_TASK` for the all-corruption model.
        channels: 1 (gray / Y) or 3 (RGB).
        fast: the strided variant (``--fast``).
        variant: what else picks it: deblur, the kernel it was trained for ("gaussian", "disk"; "" = a blind
            model); inpaint, "mask" for the model that takes the mask ("" = blind).
    """

    file: str
    task: str
    channels: int
    fast: bool = False
    variant: str = ""


ANY_TASK = "any"
"""``ModelEntry.task`` of the all-corruption model: one model for the damage of every task, alone or mixed
(noise then JPEG, blur then noise); ``rednet restore`` runs it with a task's pre-restore step (``--task sr
--scale 2``) or without one (no ``--task``)."""

WEIGHTS: dict[str, ModelEntry] = {
    # Blind denoisers, sigma 0-75, trained on CPU (see their cards for the runs and their cost).
    "denoise-gray": ModelEntry("denoise-gray.safetensors", task="denoise", channels=1),
    "denoise-color": ModelEntry("denoise-color.safetensors", task="denoise", channels=3),
    # Fast (strided) variants: the first convolution and the last deconvolution stride by 2 (``--fast``);
    # docs/results.md's fast section gives their speed-up and PSNR cost against the full models.
    "denoise-color-fast": ModelEntry("denoise-color-fast.safetensors", task="denoise", channels=3, fast=True),
    # One super-resolution model for x2, x3 and x4, on Y (colour images: Cb and Cr are bicubic).
    "sr": ModelEntry("sr.safetensors", task="sr", channels=1),
    "sr-fast": ModelEntry("sr-fast.safetensors", task="sr", channels=1, fast=True),
    # Blind JPEG deblocking, q 5-95: on Y / gray, and on RGB for colour JPEGs (4:2:0).
    "jpeg": ModelEntry("jpeg.safetensors", task="jpeg", channels=1),
    "jpeg-color": ModelEntry("jpeg-color.safetensors", task="jpeg", channels=3),
    # Non-blind deblurring, RGB: one model per kernel of the official demo (noise sigma 0-2.55 in training).
    "deblur-gaussian": ModelEntry(
        "deblur-gaussian.safetensors", task="deblur", channels=3, variant="gaussian"
    ),
    "deblur-disk": ModelEntry("deblur-disk.safetensors", task="deblur", channels=3, variant="disk"),
    # Blind deblurring, RGB: one model for Gaussian blurs of sigma 0.5-3 px (the kernel is not an input).
    "deblur": ModelEntry("deblur.safetensors", task="deblur", channels=3),
    # Inpainting, RGB: blind (finds overlaid text and scratches itself), and told the damage by a mask.
    "inpaint": ModelEntry("inpaint.safetensors", task="inpaint", channels=3),
    "inpaint-mask": ModelEntry("inpaint-mask.safetensors", task="inpaint", channels=3, variant="mask"),
    # Blind inpainting in two steps: this damage model (a RED20) finds the damage, inpaint-mask fills it.
    "inpaint-detect": ModelEntry("inpaint-detect.safetensors", task="inpaint", channels=3, variant="detect"),
    # One RGB RED30 for every task's damage, alone and mixed (noise then JPEG, blur then JPEG, blur then
    # noise): --model restore-any, with or without --task; docs/results.md's any section gives its cost.
    "restore-any": ModelEntry("restore-any.safetensors", task=ANY_TASK, channels=3),
}
"""The shipped models by name (their model cards are the ``.json`` files in ``weights/``)."""


def default_model(task: str, channels: int, *, fast: bool = False, variant: str | None = "") -> str:
    """Name of the shipped model for a task: the one matching the image's channels if there is one.

    Args:
        task: the task.
        channels: the image's channels, 1 or 3.
        fast: the strided variant.
        variant: see :class:`ModelEntry` (a deblurring kernel, "mask"); None = the blind model if there is
            one, else any.
    """
    candidates = [n for n, e in WEIGHTS.items() if e.task == task and e.fast == fast]
    if variant is None:
        candidates = [n for n in candidates if not WEIGHTS[n].variant] or candidates
    else:
        candidates = [n for n in candidates if WEIGHTS[n].variant == variant]
    if not candidates:
        if task_named(task).uses_kernel and variant == "":
            raise ValueError(
                "no shipped model for an unknown blur yet: give --kernel gaussian or disk (the kernels the "
                "shipped models undo), or --weights FILE.safetensors of your own"
            )
        kind = "fast (strided) " if fast else ""
        which = {"": "", "mask": " that takes a mask"}.get(variant or "", f" for the {variant} kernel")
        raise ValueError(
            f"no shipped {kind}model for task {task!r}{which} yet; train one (rednet train, rednet export) "
            "and pass --weights FILE.safetensors"
        )
    matching = [n for n in candidates if WEIGHTS[n].channels == channels]
    return (matching or candidates)[0]


def detect_and_fill() -> tuple[str, str] | None:
    """(damage model, mask-aware model): the shipped pair that inpaints blind in two steps, the first finding
    the damage and the second filling it; None when either is not shipped."""
    found = {
        e.variant: n
        for n, e in WEIGHTS.items()
        if e.task != ANY_TASK and task_named(e.task).masks and e.variant in ("detect", "mask")
    }
    return (found["detect"], found["mask"]) if len(found) == 2 else None


def any_damage_models() -> list[str]:
    """The shipped models for any damage (``ModelEntry.task == ANY_TASK``), in ``WEIGHTS`` order."""
    return [n for n, e in WEIGHTS.items() if e.task == ANY_TASK]


def card_tasks(card: dict[str, Any]) -> list[str]:
    """The tasks a model card's run trained on, in its order: ``["denoise"]``, or for a run that mixed
    tasks (``--task "denoise,sr,deblur>jpeg"``) each task once; [] for a card that names none."""
    items = str(card.get("task") or "").replace(">", ",").split(",")
    return list(dict.fromkeys(t.strip() for t in items if t.strip()))


def load(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> REDNet:
    """A ready model, by shipped name (``WEIGHTS``) or weights path, with its card as ``model.card``.

    Args:
        name_or_path: a key of :data:`WEIGHTS` or a ``.safetensors`` file.
        device: where to put the model.

    Returns:
        The model in eval mode, float32, on ``device``; ``model.card`` is its model card (a dict).
    """
    if str(name_or_path) in WEIGHTS:
        path = WEIGHTS_DIR / WEIGHTS[str(name_or_path)].file
    else:
        path = Path(name_or_path)
        if not path.exists() and path.suffix != ".safetensors":
            names = ", ".join(WEIGHTS) or "none yet"
            raise ValueError(f"{name_or_path}: not a shipped model (shipped: {names}) nor a weights file")
    model, card = load_weights(path)
    model.card = card
    return model.to(device)


def read_card(name: str) -> dict[str, Any]:
    """The model card of a shipped model (``weights/NAME.json``); empty if the file is missing."""
    path = (WEIGHTS_DIR / WEIGHTS[name].file).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {}


def card_summary(card: dict[str, Any]) -> str:
    """One line about a model card: architecture, levels, training (all runs added up) and validation."""
    arch, total, val = card.get("architecture", {}), card.get("total", {}), card.get("validation", {})
    levels = ", ".join(f"{k} {v}" for k, v in card.get("levels", {}).items())
    best = val.get("best_psnr") or float("nan")
    folders = card.get("training_data", {}).get("folders", "?")
    # Runs of another task it was warm-started from (e.g. sr from denoise-gray) are named, not summed in.
    # Its own task's runs since then (e.g. a second sr cycle from the first sr weights) are added up.
    lineage = card.get("lineage", [])
    other = [i for i, r in enumerate(lineage) if f"--task {card.get('task')} " not in r["command"] + " "]
    if other:
        last = other[-1]
        own = [card, *lineage[last + 1 :]]
        try:
            steps, patches = sum(r["steps"] for r in own), sum(r["patches_seen"] for r in own)
        except (KeyError, TypeError):
            steps, patches = card.get("steps", "?"), card.get("patches_seen", "?")
        training = (
            f"{steps} steps, {patches} patches of {folders}, "
            f"from {lineage[last]['name']}'s weights ({total.get('steps', '?')} steps in all)"
        )
    else:
        training = (
            f"{total.get('steps', card.get('steps', '?'))} steps, "
            f"{total.get('patches_seen', card.get('patches_seen', '?'))} patches of {folders}"
        )
    stride = f", stride {arch['stride']}" if arch.get("stride", 1) > 1 else ""
    return (
        f"RED{arch.get('depth', '?')} width {arch.get('width', '?')}{stride}, {card.get('channel', '?')}, "
        f"{levels}; "
        f"{training}; "
        f"validation {best:.2f} dB on {str(val.get('set', '?')).split('datasets/')[-1]} at {val.get('level')}"
    )


def save_weights(path: str | Path, model: REDNet, card: dict[str, Any]) -> Path:
    """Write ``model`` as fp16 safetensors plus ``card`` (also as ``NAME.json`` beside it), atomically.

    Returns:
        The path of the weights file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights files must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(asdict(model.config)), "card": json.dumps(card), "format": "rednet-1"}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)

    replace_atomically(path, write)
    write_card(path, card)
    return path


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_card(weights: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` beside ``weights`` as ``NAME.json`` (atomically), with the weights file's ``sha256``.

    Returns:
        The card's path.
    """
    weights = Path(weights)
    text = json.dumps({**card, "sha256": sha256_file(weights)}, indent=2) + "\n"
    target = weights.with_suffix(".json")
    replace_atomically(target, lambda tmp: (tmp.write_text(text), os.chmod(tmp, 0o644)))
    return target


def verify_weights(path: str | Path) -> None:
    """Check a weights file against the ``sha256`` of the card beside it (``NAME.json``), if it has one.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, when its bytes are not those the card was written for
            (truncated, bit-flipped or replaced).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    card_path = path.with_suffix(".json")
    try:
        expected = json.loads(card_path.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return  # no readable card beside it: nothing to check against
    if expected and sha256_file(path) != expected:
        raise ValueError(
            f"{path}: damaged weights file (truncated or changed): its sha256 is not the "
            f"{expected[:12]}... of {card_path.name}; reinstall rednet or export the weights again"
        )


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], REDNetConfig, dict[str, Any]]:
    """Read a weights file: (float32 state dict, model config, card).

    Raises:
        ValueError: one line, for a file whose sha256 is not the one of the card beside it (``NAME.json``),
            a truncated or non-safetensors file, one without rednet metadata, or one whose tensors are not
            floating point.
    """
    from safetensors import safe_open

    path = Path(path)
    verify_weights(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ValueError(
            f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:120]})"
        ) from None
    if "config" not in metadata:
        raise ValueError(f"{path}: no rednet model config in the file's metadata")
    wrong = [k for k, v in state.items() if not v.is_floating_point()]
    if wrong:
        raise ValueError(f"{path}: tensor {wrong[0]} is {state[wrong[0]].dtype}, not floating point")
    state = {k: v.float() for k, v in state.items()}
    try:
        config = REDNetConfig(**json.loads(metadata["config"]))
        card = json.loads(metadata.get("card", "{}"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad rednet metadata ({e})") from None
    return state, config, card


def load_weights(path: str | Path) -> tuple[REDNet, dict[str, Any]]:
    """Build the model a weights file describes and load it: (model in eval mode, float32; card)."""
    state, config, card = read_weights(path)
    model = REDNet(config)
    own = model.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape] + [
        k for k in state if k not in own
    ]
    if bad:
        raise ValueError(f"{path}: tensors do not match the architecture in its metadata (e.g. {bad[0]})")
    model.load_state_dict(state)
    return model.eval(), card
