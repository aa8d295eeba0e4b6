#!/usr/bin/env bash
# Run every benchmark (pass --quick for the 2-minute versions) and collect each one's last line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
status=0
for bench in model_step preprocess loader split pseudo_label semi_supervised; do
    echo "== bench/$bench.py $*"
    out=$("$PY" "bench/$bench.py" "$@" 2>&1 | tee /dev/stderr | tail -n 1) || status=1
    summary+="$bench: $out"$'\n'
done
echo "== summary"
printf '%s' "$summary"
exit $status
