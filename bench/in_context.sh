#!/usr/bin/env bash
# In-context (zero-shot) benchmark, engine only, no PostgreSQL: pretrains the in-context
# model (engine/src/icl) on generated databases — seeds 0..N-1, never a benchmark seed —
# and scores it zero-shot on every binary and regression task of the benchmark databases
# (the generality pairs' seeds, `--scale medium`), on each task's own test split, from 64
# labelled examples known at each test anchor and no training on the task.
# Usage: bench/in_context.sh [OUT_DIR] [extra pretrain_icl arguments]
#   bench/in_context.sh                                    # the README's run (~30 min, 2 cores)
#   bench/in_context.sh build/icl/e128 --init build/icl/run --steps 0 --examples 128
# OUT_DIR (default build/icl/run) gets icl.safetensors and card.json (configuration,
# loss curve, seconds, the weights' SHA-256, the zero-shot results).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-build/icl/run}"; shift || true
cargo build --release -q -p rdl-engine --example pretrain_icl
exec target/release/examples/pretrain_icl --out "$out" --worlds 40 --scale small \
    --steps 10000 --examples 64 --queries 16 \
    --eval 1000,1001,1002,1003,1004,1005,1008,1009,1011 --eval-scale medium "$@"
