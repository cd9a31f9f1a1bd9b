#!/usr/bin/env bash
# Prepares runs/gpu_carry/ (git-ignored) for the paper-scale CIFAR-10 run on a lent GPU machine
# (docs/RESULTS.md, "Paper scale on one GPU"; the device's own script is bin/gpu_reproduce.sh).
#
#   bash bin/gpu_prepare.sh            # from the repository root, here (needs the package index)
#
# 1. wheels/: the pure-Python or cp312 packages the run imports that the device image lacks
#    (its package list: /work/.library/device/KINDS.md): ml_collections (configs), clu (training
#    metrics), grain + array_record + portpicker (the input pipeline), each pinned, no deps.
# 2. cifar10_packed/: the 60,000 CIFAR-10 JPEGs packed by bin/pack_dataset.py, which first checks
#    the packed files + the repository + the wheels against the call's 64 MiB.
# 3. Prints the total that travels (du of the carry folder + git's files of the repository).
# PYTHON (default .venv/bin/python) runs pip and the packer; MANUAL_DIR overrides the data folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CARRY=runs/gpu_carry
WHEELS=(ml_collections==1.1.0 clu==0.0.12 grain==0.2.18 array_record==0.8.6 portpicker==1.6.0)
mkdir -p "$CARRY/wheels"
rm -f "$CARRY"/wheels/*.whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$CARRY/wheels" "${WHEELS[@]}"
"$PYTHON" bin/pack_dataset.py --out="$CARRY/cifar10_packed" --travel_with="$CARRY/wheels" \
  ${MANUAL_DIR:+--manual_dir="$MANUAL_DIR"}
repo=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
carry=$(du -sb "$CARRY" | cut -f1)
echo "travels: repository $((repo / 1024)) KiB + $CARRY $((carry / 1024)) KiB =" \
  "$(((repo + carry) / 1048576)) MiB of 64 MiB"
