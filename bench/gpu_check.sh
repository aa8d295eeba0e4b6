#!/usr/bin/env bash
# The GPU check, one script for a lent GPU (<= 6 minutes on one H200-class GPU):
#   1. the paper's teacher (C128/D256, 10 s crops, batch 32) training crops/s through `mtt train`
#      (DataLoader from HDF5 shards) vs the bare step, and peak GPU memory (bench/gpu_train.py);
#   2. the model step in fp32 and bf16 autocast, each also channels-last
#      (bench/model_step.py --quick --device cuda);
#   3. pseudo-labeling songs/s vs the bare forward (bench/pseudo_label.py --quick --device cuda);
#   4. the published-layout reference checkpoint on the GPU against the CPU and the original
#      implementation's probabilities: fp32 within 1e-5, bf16 within 2e-2 (bench/gpu_fidelity.py);
#   5. the tiny workflow end to end with `device: cuda`.
# On a lent GPU machine (no network) it runs through bench/gpu_offline.sh, which installs what
# bench/gpu_bundle.sh gathered here.
# It fails at once, with one line, when CUDA is not available: nothing falls back to the CPU.
# Last line: the key=value pairs of every part.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: CUDA was asked for and is not available on this machine "
             f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); not running on CPU")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
PY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$SECONDS
fidelity=$(python bench/gpu_fidelity.py --device cuda | tail -n 1)
echo "fidelity: $fidelity"
train=$(python bench/gpu_train.py --work "$work/train" --device cuda | tail -n 1)
echo "train: $train"
step=$(python bench/model_step.py --quick --device cuda | tail -n 1)
echo "model_step: $step"
pseudo=$(python bench/pseudo_label.py --quick --device cuda --conv-channels 128 --width 256 | tail -n 1)
echo "pseudo_label: $pseudo"
tiny_start=$SECONDS
snakemake -s Snakefile --directory "$work/tiny" --cores all --configfile tests/tiny.yaml \
    --config device=cuda > "$work/tiny.log" 2>&1 || { tail -n 40 "$work/tiny.log"; exit 1; }
tail -n 4 "$work/tiny/results/evaluation/summary.tsv"
echo "$fidelity $train $step $pseudo tiny_workflow_cuda_s=$((SECONDS - tiny_start)) total_s=$((SECONDS - started))"
