#!/usr/bin/env bash
# Spot-check list for refactors that must not change behaviour (issue 28).
# Usage: tools/spotcheck.sh OUTDIR    (run from the repository root, PYTHONPATH pointing at src/)
# Writes one `rednet eval --json` file per case (OUTDIR/<case>.json) plus OUTDIR/files.sha256, the hashes of
# what `rednet degrade` and `rednet restore` write, and OUTDIR/patches.sha256, those of training patches
# (tools/spotcheck_patches.py). Compare two runs with tools/spotcheck_compare.py.
# At least one case per task and per shipped model, gray and colour sets, the ensemble once; few images so
# that it stays cheap on a CPU.
set -euo pipefail
out=${1:?usage: tools/spotcheck.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python}
data=${REDNET_DATA:-../shared/datasets}

ev() {  # ev CASE ARGS...
    local name=$1
    shift
    "$py" -m rednet eval --json --data-root "$data" "$@" >"$out/$name.json"
}

# classical methods and the degraded input: one per task, gray and colour
ev denoise-identity-gray --task denoise --sigma 25 --dataset Set12 --limit 2
ev denoise-bm3d-color --task denoise --sigma 25 --dataset Set5 --method bm3d --limit 1
ev sr-bicubic-color --task sr --scale 3 --dataset Set5 --method bicubic
ev sr-bicubic-gray --task sr --scale 2 --dataset Set12 --method bicubic --limit 2
ev jpeg-identity-gray --task jpeg --quality 10 --dataset Classic5 --limit 2
ev jpeg-identity-color --task jpeg --quality 20 --dataset Set5 --limit 2
ev jpeg-identity-rgb --task jpeg --quality 20 --dataset Set5 --channel rgb --limit 2
ev deblur-wiener-color --task deblur --kernel gaussian --sigma 2.55 --dataset Set5 --method wiener --limit 2
ev deblur-rl-gray --task deblur --kernel disk --dataset Set12 --method richardson-lucy --iterations 5 --limit 1
ev inpaint-telea-text --task inpaint --damage text --dataset Set5 --method telea --limit 2
ev inpaint-biharmonic-rate --task inpaint --damage 0.5 --dataset Set5 --method biharmonic --limit 1
ev inpaint-identity-decoys --task inpaint --damage decoys --dataset Set5 --limit 2
ev sr-noquant-shave0 --task sr --scale 4 --dataset Set5 --method bicubic --no-quantize --shave 0 --limit 2

# every shipped model
rn() {  # rn CASE MODEL ARGS...
    local name=$1 model=$2
    shift 2
    ev "$name" --method rednet --model "$model" "$@"
}
rn m-denoise-gray denoise-gray --task denoise --sigma 25 --dataset Set12 --limit 2
rn m-denoise-gray-ensemble denoise-gray --task denoise --sigma 50 --dataset Set12 --limit 1 --ensemble
rn m-denoise-color denoise-color --task denoise --sigma 25 --dataset Set5 --limit 2
rn m-sr-color sr --task sr --scale 3 --dataset Set5 --limit 2
rn m-sr-fast sr-fast --task sr --scale 3 --dataset Set5 --limit 2
rn m-denoise-color-fast denoise-color-fast --task denoise --sigma 25 --dataset Set5 --limit 2
rn m-sr-gray sr --task sr --scale 2 --dataset Set12 --limit 1
rn m-jpeg-gray jpeg --task jpeg --quality 10 --dataset Classic5 --limit 2
rn m-jpeg-color jpeg --task jpeg --quality 10 --dataset Set5 --limit 2
rn m-jpeg-color-rgb jpeg-color --task jpeg --quality 10 --dataset Set5 --channel rgb --limit 2
rn m-deblur-gaussian deblur-gaussian --task deblur --kernel gaussian --sigma 2.55 --dataset Set5 --limit 2
rn m-deblur-disk deblur-disk --task deblur --kernel disk --sigma 2.55 --dataset Set5 --limit 2
rn m-deblur-blind deblur --task deblur --kernel gaussian-2.4 --sigma 2.55 --dataset Set12 --limit 1
rn m-inpaint inpaint --task inpaint --damage text --dataset Set5 --limit 2
rn m-inpaint-mask inpaint-mask --task inpaint --damage 0.5 --dataset Set5 --limit 2
rn m-inpaint-detect inpaint-mask --task inpaint --damage decoys --dataset Set5 --limit 2 --detector inpaint-detect

# what degrade and restore write, byte for byte
tmp=$(mktemp -d)
img=$data/Set5/baby_GT.bmp
gray=$data/Set12/01.png
"$py" -m rednet degrade "$img" --task denoise --sigma 25 -o "$tmp/d-denoise.png"
"$py" -m rednet degrade "$img" --task sr --scale 3 -o "$tmp/d-sr.png"
"$py" -m rednet degrade "$gray" --task jpeg --quality 10 -o "$tmp/d-jpeg.jpg"
"$py" -m rednet degrade "$img" --task deblur --kernel disk --sigma 2.55 -o "$tmp/d-deblur.png"
"$py" -m rednet degrade "$img" --task inpaint --damage text -o "$tmp/d-inpaint.png" --save-mask "$tmp/d-mask.png"
"$py" -m rednet restore "$tmp/d-sr.png" --task sr --scale 3 -o "$tmp/r-sr.png"
"$py" -m rednet restore "$tmp/d-inpaint.png" --task inpaint -o "$tmp/r-inpaint-blind.png"
"$py" -m rednet restore "$tmp/d-inpaint.png" --task inpaint --mask "$tmp/d-mask.png" -o "$tmp/r-inpaint-mask.png"
"$py" -m rednet restore "$gray" --task denoise --sigma 25 -o "$tmp/r-denoise-gray.png"
(cd "$tmp" && sha256sum ./*) >"$out/files.sha256"
"$py" tools/spotcheck_patches.py >"$out/patches.sha256"
rm -r "$tmp"
echo "spotcheck: $(ls "$out" | wc -l) files in $out"
