#!/usr/bin/env bash
# The text rows the modality-free core must not lose (issue 12): the same benchmark at two commits, interleaved
# (old, new, old, new...) so that both see the same machine load, one torch thread each.
#   [ROUNDS=2] benchmarks/core_regression.sh OLD_WORKTREE NEW_WORKTREE OUT_DIR   (round 2 runs new before old)
# Each worktree is a checkout of one commit (git worktree add /tmp/wt-old <commit>); the current venv runs both.
set -euo pipefail
old=$1 new=$2 out=$3
py=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
mkdir -p "$out"
run() {  # label worktree dataset model
    (cd "$2" && PYTHONPATH="$2/src" ATTNKIT_DATA=${ATTNKIT_DATA:-/work/shared/datasets} "$py" \
        benchmarks/text_classification.py --dataset "$3" --models "$4" --no-baseline --set train.threads=1 \
        --out "$out/$1-$3-$4.json")
}
for round in $(seq 1 "${ROUNDS:-2}"); do
    for job in "imdb bag-attn" "sst2 bilstm-attn" "imdb nb-attn-ensemble"; do
        set -- $job
        if [ "$round" = 1 ]; then order="old new"; else order="new old"; fi
        for side in $order; do
            if [ "$side" = old ]; then tree=$old; else tree=$new; fi
            run "$side$round" "$tree" "$1" "$2"
        done
    done
done
