#!/usr/bin/env bash
# Gathers, for a lent GPU machine (Python 3.12 with torch 2.11 and the scientific stack already
# installed, no network), what its image lacks into one folder that the device tool carries:
#   .gpu/wheels/     snakemake and everything it needs that the image has not, soundfile, soxr,
#                    the slurm plugin (a dependency of ours) and the project's own wheel: CPython
#                    3.12 manylinux x86_64 wheels at the versions of envs/constraints.txt
#   .gpu/reference/  the files bench/gpu_fidelity.py needs (../shared does not travel)
# Then one device call runs the GPU check: `bash bench/gpu_offline.sh`, carrying `.gpu`.
#
#   bash bench/gpu_bundle.sh [OUT_DIR]        # default .gpu (ignored by git)
#
# Needs a Python 3.12 here ($PYTHON312, python3.12 on PATH, or pyenv's) and PyPI. Refuses a
# bundle that would make the travelling tree (tracked files + bundle) larger than 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu}
limit_bytes=$((64 * 1024 * 1024))
# What the GPU image already has (and its versions are used): the scientific stack and its
# dependencies. Everything else the project needs is bundled.
image_has='^(torch|torchaudio|numpy|scipy|pandas|scikit_learn|h5py|matplotlib|pyyaml|tqdm|pygments|python_dateutil|six|tzdata|pytz|pillow|contourpy|fonttools|kiwisolver|pyparsing|cycler|joblib|threadpoolctl|onnx|onnxruntime|nvidia_.*|triton|sympy|mpmath|networkx|fsspec|filelock|setuptools)-'

python312=${PYTHON312:-}
if [ -z "$python312" ]; then
    for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            python312=$candidate; break
        fi
    done
fi
[ -n "$python312" ] || { echo "gpu_bundle: no Python 3.12 found (set PYTHON312)" >&2; exit 1; }
reference=${MTT_REFERENCE:-../shared/reference}
for name in teacher_format.ckpt clip_mono_22050.npy clip_teacher_probs.npy; do
    [ -f "$reference/$name" ] || { echo "gpu_bundle: $reference/$name is missing" >&2; exit 1; }
done

work="$out.partial"
rm -rf "$work" && mkdir -p "$work/wheels" "$work/reference"
missing=$(IMAGE_HAS="$image_has" "$python312" - <<'PY'
import os, re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
name = lambda d: re.match(r"[A-Za-z0-9_.-]+", d)[0].lower().replace("-", "_")
print(" ".join(d for d in deps if not re.match(os.environ["IMAGE_HAS"], name(d) + "-")))
PY
)
# shellcheck disable=SC2086  # one requirement per word, none with spaces
"$python312" -m pip wheel -q -w "$work/wheels" -c envs/constraints.txt $missing
"$python312" -m pip wheel -q --no-deps -w "$work/wheels" .
find "$work/wheels" -name '*.whl' -printf '%f\n' | tr 'A-Z' 'a-z' | grep -E "$image_has" |
    while read -r wheel; do find "$work/wheels" -iname "$wheel" -delete; done
cp "$reference"/{teacher_format.ckpt,clip_mono_22050.npy,clip_teacher_probs.npy} "$work/reference/"

bundle_bytes=$(du -sb "$work" | cut -f1)
tree_bytes=$(git ls-files -z | du -cb --files0-from=- | tail -n 1 | cut -f1)
total=$((bundle_bytes + tree_bytes))
if [ "$total" -gt "$limit_bytes" ]; then
    echo "gpu_bundle: $((total / 1048576)) MiB would travel (bundle $((bundle_bytes / 1048576)) MiB + tree), over 64 MiB" >&2
    exit 1
fi
rm -rf "$out" && mv "$work" "$out"
echo "gpu_bundle: $out: $(ls "$out/wheels" | wc -l) wheels, bundle $((bundle_bytes / 1048576)) MiB, with the tree $((total / 1048576)) MiB of 64"
echo "bundle_wheels=$(ls "$out/wheels" | wc -l) bundle_mib=$((bundle_bytes / 1048576)) travel_mib=$((total / 1048576))"
