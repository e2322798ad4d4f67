#!/usr/bin/env bash
# Fine-tuned from the pretrained weights against trained from scratch, on rel-f1 (RelBench
# cutoffs; the shipped weights never saw F1): for driver-dnf, driver-top3 and
# driver-position, each seed trains the task twice with the same options and budget —
# `{"init": "scratch"}` and `{"init": "pretrained"}` plus OPTIONS — and prints the test
# metric, the epochs run and the wall time of each, then per task and init the mean and
# the range over the seeds.
# Usage: bench/fine_tune_f1.sh [OPTIONS jsonb] [SEEDS]
#   bench/fine_tune_f1.sh                        # defaults (budget 600 s), seeds 0 1 2
#   bench/fine_tune_f1.sh '{"max_train": 2000}' "0 1"   # few examples
# Results go to build/fine_tune/results.csv (RDL_FT_OUT); a run already there (task, init,
# seed) is not run again, so an interrupted benchmark resumes — remove the file for a
# fresh one (or when OPTIONS change).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
. "$RDL_ROOT/bench/f1_tasks.sh"
opts="${1:-{\}}"; seeds="${2:-0 1 2}"
bench_db
res="${RDL_FT_OUT:-$RDL_ROOT/build/fine_tune/results.csv}"; mkdir -p "$(dirname "$res")"; touch "$res"
echo "options: $opts; seeds: $seeds"
for t in driver-dnf driver-top3 driver-position; do
    for seed in $seeds; do
        for init in scratch pretrained; do
            name="ft-$init-$t"
            grep -q "^$t,$init,$seed," "$res" && continue
            echo "SELECT rdl_create_task(:'n', :'q', '{\"val_cutoff\": \"2005-01-01\", \"test_cutoff\": \"2010-01-01\"}') IS NOT NULL WHERE NOT EXISTS (SELECT 1 FROM rdl.tasks WHERE name = :'n')" \
              | bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v n="$name" -v q="$(f1_query "$t")" >/dev/null
            o=$(python3 -c 'import json,sys; o=json.loads(sys.argv[1]); o.update(init=sys.argv[2], seed=int(sys.argv[3])); print(json.dumps(o))' "$opts" "$init" "$seed")
            t0=$(date +%s.%N)
            epochs=$(echo "CALL rdl_train(:'n', :'o')" | bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v n="$name" -v o="$o" 2>&1 | grep -c "rdl_train .*: epoch ")
            secs=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0))")
            m=$(echo "SELECT rdl_evaluate(:'n', 'test')" | bench_psql -d rdl_bench -At -v n="$name" \
                | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m.get("auroc", m.get("mae")))')
            echo "$t,$init,$seed,$m,$epochs,$secs" >> "$res"
            echo "$t seed $seed $init: test $m, $epochs epochs, ${secs}s"
        done
    done
done
python3 - "$res" <<'PY'
import csv, sys, collections
runs = collections.defaultdict(list)
for t, init, seed, m, ep, s in csv.reader(open(sys.argv[1])):
    runs[(t, init)].append(float(m))
print("task | scratch: mean (min-max) | pretrained: mean (min-max) | better")
for t in dict.fromkeys(k[0] for k in runs):
    a, b = runs[(t, "scratch")], runs[(t, "pretrained")]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    lower = t == "driver-position"
    better = "pretrained" if (mb < ma if lower else mb > ma) else "scratch"
    f = lambda v, m: f"{m:.3f} ({min(v):.3f}-{max(v):.3f})"
    print(f"{t} ({'MAE' if lower else 'AUROC'}) | {f(a, ma)} | {f(b, mb)} | {better}")
PY
