#!/usr/bin/env bash
# The paper-scale CIFAR-10 DFS-Net experiment (cifar10_schemes:gpu) on a lent GPU machine, in one
# device call (docs/RESULTS.md, "Paper scale on one GPU"; prepare the carry with
# bin/gpu_prepare.sh here first):
#
#   device run: command "bash bin/gpu_reproduce.sh", carry ["runs/gpu_carry"], timeout_s 600
#   extra experiment arguments pass through: "bash bin/gpu_reproduce.sh epochs=6"
#
# On the device (repository root, python3 = 3.12 with jax[cuda], flax, optax, orbax; no
# tensorflow, tfds, ml_collections, clu or grain; $OUT comes back): installs the carried wheels
# into /tmp/site, runs bin/gpu_reproduce.py (bin/reproduce.py without an install or tensorflow)
# on the packed data with the workdir runs/c10_schemes_gpu (git-ignored: a second call that finds
# the machine still warm resumes it, finished networks and features skipped), stops it LIMIT_S
# (default 600) - 25 s after the start so that what exists still comes back, and leaves in $OUT
# at most 6 files: log.txt, env.txt,
# results.json, results.md, figures.tar (the PNGs) and train.tar (each network's
# train_result.json, metrics.jsonl, config.json). Exit status: the run's (124: stopped at the
# limit).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back}"
CARRY=${CARRY:-runs/gpu_carry}
LIMIT_S=${LIMIT_S:-600}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-runs/c10_schemes_gpu}
ARG="gpu,data=$CARRY/cifar10_packed${1:+,$1}"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$CARRY"/wheels/*.whl || { echo "wheel install failed" >&2; exit 3; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ date -u; nvidia-smi -L; "$PYTHON" -c "import jax, flax; print('jax', jax.__version__,
'flax', flax.__version__, jax.devices())"; "$PYTHON" -c "import cbir_jax.kernels.ffi as f;
print('native CPU kernels:', f.available())"; } > "$OUT/env.txt" 2>&1
left=$((LIMIT_S - SECONDS - 25))
echo "cifar10_schemes:$ARG, $left s left for the run" | tee "$OUT/log.txt"
timeout "$left" "$PYTHON" bin/gpu_reproduce.py --experiment="cifar10_schemes:$ARG" \
  --workdir="$WORK" 2>&1 | tee -a "$OUT/log.txt"
rc=${PIPESTATUS[0]}
for f in results.json results.md; do
  [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
done
(cd "$WORK" 2>/dev/null && ls ./*.png >/dev/null 2>&1 && tar -cf "$OUT/figures.tar" ./*.png)
(cd "$WORK" 2>/dev/null && find train -maxdepth 2 \( -name train_result.json \
  -o -name metrics.jsonl -o -name config.json \) -print0 | tar -cf "$OUT/train.tar" --null -T -)
echo "exit $rc after $SECONDS s" | tee -a "$OUT/log.txt"
exit "$rc"
