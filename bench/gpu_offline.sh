#!/usr/bin/env bash
# On a lent GPU machine (its image's packages, no network): installs the bundle that
# bench/gpu_bundle.sh gathered into .gpu/ beside the image's packages, offline, then runs COMMAND
# (default: the GPU check, bench/gpu_check.sh). With $OUT set (the device tool's folder that comes
# back), the output is also written to $OUT/gpu_check.log.
#
#   device run, carry [".gpu"]:  bash bench/gpu_offline.sh
#   any command instead:          bash bench/gpu_offline.sh snakemake --cores all ...
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${MTT_GPU_BUNDLE:-.gpu}
site=$(realpath -m "${MTT_GPU_SITE:-/tmp/mtt-site}")
python=${PYTHON:-python3}
if ! compgen -G "$bundle/wheels/*.whl" >/dev/null; then
    echo "gpu_offline: no wheels in $bundle/wheels: run bench/gpu_bundle.sh here first and carry $bundle" >&2
    exit 1
fi
# --no-deps: the image's own versions of what it has are used, nothing is resolved or fetched.
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --disable-pip-version-check --target "$site" "$bundle"/wheels/*.whl
# The workflow's rules run `python`: make it the interpreter the bundle was installed for.
printf '#!/bin/sh\nexec %q "$@"\n' "$(command -v "$python")" > "$site/bin/python"
chmod +x "$site/bin/python"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$site/bin:$PATH" MTT_REFERENCE="$PWD/$bundle/reference"
echo "gpu_offline: installed $(ls "$bundle"/wheels/*.whl | wc -l) wheels into $site for $("$python" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}")')"
[ $# -gt 0 ] || set -- bash bench/gpu_check.sh
if [ -n "${OUT:-}" ]; then
    "$@" 2>&1 | tee "$OUT/gpu_check.log"
else
    "$@"
fi
