"""``rednet export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet export RUN_DIR`` and ``rednet export onnx``."""
    p = sub.add_parser(
        "export",
        help="RUN_DIR -o NAME.safetensors: fp16 weights + model card; onnx --weights FILE -o NAME.onnx",
        description="rednet export RUN_DIR -o NAME.safetensors writes a run's weights (fp16) and its "
        "model card (NAME.json); rednet export onnx --weights FILE -o NAME.onnx writes an ONNX graph.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR|onnx", help="training run folder, or the word onnx")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="NAME.safetensors (card: NAME.json) or .onnx"
    )
    p.add_argument("--weights", type=Path, help="onnx: the weights file (.safetensors) to convert")
    p.add_argument("--opset", type=int, default=18, help="onnx: opset version (default 18)")
    p.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="best validation PSNR (default) or the last step",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if str(args.run_dir) == "onnx" and not args.run_dir.is_dir():
        from rednet.onnx import export_onnx
        from rednet.zoo import load_weights

        if args.weights is None:
            raise ValueError("rednet export onnx needs --weights FILE.safetensors")
        if args.output.exists() and not args.overwrite:
            raise FileExistsError(f"{args.output}: already exists; pass --overwrite to replace it")
        model, card = load_weights(args.weights)
        out = export_onnx(model, args.output, opset=args.opset, card=card)
        print(f"wrote {out}", file=sys.stderr)
        return 0
    from rednet.export import export_run

    out = export_run(args.run_dir, args.output, checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0
