#!/usr/bin/env bash
# GPU speed check, run from the repository root on a CUDA machine:
#
#     bash benchmarks/gpu_check.sh            # about 6 minutes on one H100/H200
#
# 1. finds a Python with torch + CUDA: ./.venv, else the system python3, else it creates
#    ./.venv and installs requirements.txt (needs a reachable package index); it says which;
# 2. benchmarks.bench on the GPU at 224 px: AM-GCN and MMNet training samples/s (batch 32,
#    bf16 autocast), evaluation, one real epoch's data-versus-compute split;
# 3. a real 5-class LOSO through CASME2_5.py at the default settings (224 px, batch 32,
#    100 epochs) on a synthetic release of CASME II's size, for FOLDS folds (default 2), and its
#    wall time extrapolated to 26 folds;
# 4. the full 26-fold LOSO with NPROC (default 8) processes sharing the GPU (torchrun): small
#    batches leave one process far from filling the GPU.
#
# Figures go to stdout and, when $OUT is set, to $OUT/gpu_check.txt, $OUT/summary.txt and
# $OUT/bench.json. Environment: FOLDS (default 2), EPOCHS (default 100); DEVICE=cpu and
# BENCH_ARGS (extra bench flags) exist only to try the script out without a GPU.
set -u -o pipefail
cd "$(dirname "$0")/.."
FOLDS="${FOLDS:-2}"
EPOCHS="${EPOCHS:-100}"
DEVICE="${DEVICE:-cuda}"
BENCH_ARGS="${BENCH_ARGS:---repeats 10}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/amgcn-gpu-check.XXXXXX")"
OUTDIR="${OUT:-$WORK/out}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.txt"
SUMMARY="$OUTDIR/summary.txt"
: > "$LOG"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$LOG"; }
note() { echo "$*" | tee -a "$LOG" >> "$SUMMARY"; }
START=$(date +%s)
trap 'rm -rf "$WORK/cache" "$WORK/release" "$WORK/run" "$WORK/ckpt"' EXIT

# ---------------------------------------------------------------- python
CHECK='import torch, timm, cv2, openpyxl, pandas, yaml, sklearn, matplotlib, tqdm
import os
if os.environ.get("DEVICE", "cuda") == "cuda":
    assert torch.cuda.is_available(), "torch sees no CUDA device"
    print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
else:
    print(torch.__version__, "cpu")'
export DEVICE
PY=""
for cand in ./.venv/bin/python python3; do
    if command -v "$cand" >/dev/null 2>&1 && info=$("$cand" -c "$CHECK" 2>&1); then
        PY="$cand"
        note "python: using $cand (torch, CUDA, GPU: $info)"
        break
    else
        say "python: $cand not usable: $(echo "${info:-not found}" | tail -n 1)"
    fi
    info=""
done
if [ -z "$PY" ]; then
    say "python: creating ./.venv and installing requirements.txt (needs a package index) ..."
    t0=$(date +%s)
    if python3 -m venv .venv >>"$LOG" 2>&1 \
        && timeout 240 .venv/bin/pip install -q -r requirements.txt >>"$LOG" 2>&1 \
        && info=$(.venv/bin/python -c "$CHECK" 2>&1); then
        PY=./.venv/bin/python
        note "python: installed ./.venv in $(( $(date +%s) - t0 )) s ($info)"
    else
        note "python: FAILED to get a Python with torch + CUDA (no package index reachable?); see $LOG"
        exit 1
    fi
fi
export AMGCN_CACHE="$WORK/cache"   # release and preprocessed inputs: fresh, outside the repo
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$LOG" >> "$SUMMARY"

# ---------------------------------------------------------------- throughput
say "== benchmarks.bench on $DEVICE (224 px, batch 32, bf16 autocast on cuda)"
t0=$(date +%s)
if timeout 120 "$PY" -m benchmarks.bench --device "$DEVICE" --img-sizes 224 --batch-size 32 \
        --epoch-size 224 $BENCH_ARGS --json "$OUTDIR/bench.json" 2>&1 | tee -a "$LOG"; then
    "$PY" - "$OUTDIR/bench.json" <<'EOF' | tee -a "$LOG" >> "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"gemm fp32 peak: {r['gemm']['peak']:.0f} GFLOP/s")
for t in r["train"]:
    print(f"train {t['arch']} {t['img_size']} px b{t['batch']}: {t['samples_per_s']:.0f} samples/s "
          f"({1000 * t['step_s']:.1f} ms/step, {t['gflops']:.0f} GFLOP/s, AM-GCN/MMNet {t['vs_mmnet']:.2f}x)")
for e in r["eval"]:
    print(f"eval {e['arch']} {e['img_size']} px: {e['samples_per_s']:.0f} samples/s")
e = r.get("epoch")
if e:
    print(f"one epoch ({e['train_samples']} samples): {e['epoch_s']:.2f} s, gather {100 * e['gather_share']:.1f}% of it, "
          f"arrays uncached {e['arrays_uncached_s']:.1f} s / cached {e['arrays_cached_s']:.2f} s")
f = r["flow"]
print(f"flow case ({f['samples']} samples, {f['img_size']} px, width {f['width']}): {f['epoch_s']:.3f} s/epoch, "
      f"full LOSO {f['loso_s'] / 60:.1f} min projected")
EOF
else
    note "bench: FAILED or timed out after $(( $(date +%s) - t0 )) s (see $LOG)"
fi

# ---------------------------------------------------------------- LOSO wall time
say "== 5-class LOSO, $FOLDS folds x $EPOCHS epochs, defaults (224 px, batch 32), synthetic CASME II-size release"
RELEASE="$WORK/release"
"$PY" -c "from data.synthetic import generate_release; generate_release('$RELEASE', subjects=26, per_subject=10, frames='key')" 2>&1 | tee -a "$LOG"
FOLD_LIST=$(seq -s, 1 "$FOLDS")
t0=$(date +%s.%N)
LEFT=$(( 300 - ($(date +%s) - START) )); [ "$LEFT" -gt 60 ] || LEFT=60
timeout "$LEFT" "$PY" CASME2_5.py --device "$DEVICE" --raf_path "$RELEASE" --folds "$FOLD_LIST" \
    --epochs "$EPOCHS" --output "$WORK/run" --checkpoint-dir "$WORK/ckpt" 2>&1 | grep -v "epoch [0-9]*/" | tee -a "$LOG"
rc=${PIPESTATUS[0]}
t1=$(date +%s.%N)
"$PY" - "$WORK/run" "$t0" "$t1" "$rc" "$FOLDS" "$EPOCHS" <<'EOF' | tee -a "$LOG" >> "$SUMMARY"
import csv, json, sys
from pathlib import Path
run, t0, t1, rc, folds, epochs = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
wall = t1 - t0
if rc != 0:
    print(f"loso: FAILED or timed out (exit {rc}) after {wall:.0f} s")
    sys.exit(0)
rows = list(csv.DictReader(open(run / "folds.csv")))
fold_s = [float(r["seconds"]) for r in rows]
per_fold = sum(fold_s) / len(fold_s)
overhead = wall - sum(fold_s)  # start-up, cache build, result files
print(f"loso: {len(rows)} folds x {epochs} epochs in {wall:.0f} s wall ({per_fold:.1f} s per fold, "
      f"{per_fold / epochs:.2f} s per epoch, {overhead:.0f} s start-up and reporting)")
print(f"loso projected to 26 folds: {(26 * per_fold + overhead) / 60:.1f} min")
EOF
# ---------------------------------------------------------------- folds in parallel on one GPU
NPROC="${NPROC:-8}"
if [ "$NPROC" -gt 1 ]; then
    say "== the full LOSO (26 folds), $NPROC folds at once: torchrun --nproc_per_node $NPROC on one GPU"
    t0=$(date +%s.%N)
    LEFT=$(( 560 - ($(date +%s) - START) )); [ "$LEFT" -gt 60 ] || LEFT=60
    timeout "$LEFT" "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" CASME2_5.py \
        --device "$DEVICE" --raf_path "$RELEASE" --epochs "$EPOCHS" \
        --output "$WORK/run_par" --checkpoint-dir "$WORK/ckpt" 2>&1 | grep -v "epoch [0-9]*/" | tail -n 12 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    t1=$(date +%s.%N)
    "$PY" - "$t0" "$t1" "$rc" "$NPROC" <<'EOF' | tee -a "$LOG" >> "$SUMMARY"
import sys
t0, t1, rc, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if rc != 0:
    print(f"parallel loso: FAILED or timed out (exit {rc}) after {t1 - t0:.0f} s")
else:
    print(f"full loso: 26 folds on {n} processes sharing the GPU in {(t1 - t0) / 60:.2f} min wall")
EOF
fi
note "gpu_check total: $(( $(date +%s) - START )) s"
echo "---- summary"; cat "$SUMMARY"
[ -n "${OUT:-}" ] || echo "(set OUT=folder to keep these files; this run's files are in $OUTDIR)"
