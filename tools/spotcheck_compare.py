"""Compare two spot-check folders (tools/spotcheck.sh): mean PSNR/SSIM bit-identical, files and
training patches byte-identical.

Usage: python tools/spotcheck_compare.py BEFORE AFTER   (exit status 1 on any difference)
"""

import json
import sys
from pathlib import Path

KEYS = ("psnr", "ssim", "psnr_shave0")


def main(before: Path, after: Path) -> int:
    bad = 0
    for path in sorted(before.glob("*.json")):
        other = after / path.name
        if not other.exists():
            sys.stdout.write(f"{path.stem}: missing after\n")
            bad += 1
            continue
        a, b = json.loads(path.read_text())["mean"], json.loads(other.read_text())["mean"]
        same = all(a.get(k) == b.get(k) for k in KEYS)
        bad += not same
        verdict = "same" if same else f"DIFFERENT (after: psnr {b['psnr']!r}, ssim {b['ssim']!r})"
        sys.stdout.write(f"{path.stem:26s} psnr {a['psnr']!r:20} ssim {a['ssim']!r:20} {verdict}\n")
    for name in ("files.sha256", "patches.sha256"):
        text_a, text_b = (before / name).read_text(), (after / name).read_text()
        verdict = "same" if text_a == text_b else "DIFFERENT"
        sys.stdout.write(f"{name} ({len(text_a.splitlines())} hashes) {verdict}\n")
        bad += text_a != text_b
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
