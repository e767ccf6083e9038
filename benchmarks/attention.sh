#!/usr/bin/env bash
# Reproduce the attention benchmark recorded in BENCHMARKS.md ("Attention"): the exact command, then its tables.
# Writes $OUT/attention.json (full report: machine, config, every cell), attention.md (tables), attention.png.
# Takes about 1.5 h on a 2-core machine; naive/explicit fwd+bwd at T=16384 need ~14 GB of free RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
ATTNKIT=${ATTNKIT:-.venv/bin/attnkit}
OUT=${OUT:-runs/bench-attention}
mkdir -p "$OUT"

"$ATTNKIT" bench attention \
    --lengths 128 256 512 1024 2048 4096 8192 16384 --batch 1 --heads 4 --dim 64 --dtype float32 \
    --mode both --repeats 5 --warmup 1 --threads 1 --clock cpu --max-seconds 300 --skip-over-memory 14 \
    --json --plot "$OUT/attention.png" > "$OUT/attention.json"
"$ATTNKIT" bench attention --from-json "$OUT/attention.json" --markdown > "$OUT/attention.md"

# Supplementary: causal masking, for the variants whose memory stays sub-quadratic in the masked case
# (naive/explicit would hold ~15 GB at T=16384 with a dense causal mask).
"$ATTNKIT" bench attention --causal --variants sdpa fast chunked local linear \
    --lengths 1024 4096 16384 --batch 1 --heads 4 --dim 64 --dtype float32 \
    --mode both --repeats 5 --warmup 1 --threads 1 --clock cpu --max-seconds 300 --skip-over-memory 14 \
    --json --plot "$OUT/attention-causal.png" > "$OUT/attention-causal.json"
"$ATTNKIT" bench attention --from-json "$OUT/attention-causal.json" --markdown > "$OUT/attention-causal.md"
