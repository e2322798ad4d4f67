#!/usr/bin/env bash
# Training options compared over seeds, on F1 and off it: for every option set and seed,
# trains each task and prints its test metric (AUROC for binary tasks, MAE for regression),
# the epochs run and the wall time, then the mean per option set. Tasks:
#   F1 (rel-f1, RelBench cutoffs): driver-dnf, driver-top3, driver-position;
#   the synthetic shop (examples/shop, 3,000 customers; val 2024-07-01, test 2024-10-01):
#     shop-churn  PREDICT COUNT(orders.*, 0, 30, days) = 0 FOR EACH customers.customer_id
#     shop-spend  PREDICT SUM(orders.amount, 0, 30, days) FOR EACH customers.customer_id
# Usage: bench/options.sh 'OPTS_A' ['OPTS_B' ...]
#   env RDL_BENCH_SEEDS (default "0 1 2"), RDL_BENCH_TASKS (default: all five).
# Each option set is merged with {"seed": N}. Shop tasks run with max_train 5000, max_val
# 2000 unless the set says otherwise.
#   bench/options.sh '{"lr": 0.003}' '{"lr": 0.001}'     # the learning-rate comparison
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
[ $# -gt 0 ] || { echo "usage: bench/options.sh OPTS [OPTS ...]" >&2; exit 2; }
seeds=(${RDL_BENCH_SEEDS:-0 1 2})
tasks=(${RDL_BENCH_TASKS:-driver-dnf driver-top3 driver-position shop-churn shop-spend})
bench_db
if ! bench_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1; then
    bench_psql -d postgres -c "CREATE DATABASE shop"
    "$RDL_ROOT/examples/shop/load.sh" -h "$bench_dir" -p "$bench_port" -U postgres -d shop
fi
bench_psql -d shop -c "DROP EXTENSION IF EXISTS rdl CASCADE" -c "CREATE EXTENSION rdl" >/dev/null

define() {  # task -> "db|query|cutoffs|base options"
    local f1='{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}'
    local shop='{"val_cutoff": "2024-07-01", "test_cutoff": "2024-10-01"}'
    case "$1" in
    driver-dnf) echo "rdl_bench|PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0|$f1|{}" ;;
    driver-top3) echo "rdl_bench|PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driver_id ASSUMING COUNT(qualifying.*, 0, 30, days) > 0|$f1|{}" ;;
    driver-position) echo "rdl_bench|PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 60, days) > 0|$f1|{}" ;;
    shop-churn) echo "shop|PREDICT COUNT(orders.*, 0, 30, days) = 0 FOR EACH customers.customer_id|$shop|{\"max_train\": 5000, \"max_val\": 2000}" ;;
    shop-spend) echo "shop|PREDICT SUM(orders.amount, 0, 30, days) FOR EACH customers.customer_id|$shop|{\"max_train\": 5000, \"max_val\": 2000}" ;;
    *) echo "unknown task $1" >&2; exit 2 ;;
    esac
}
results=$(mktemp)
for t in "${tasks[@]}"; do
    IFS='|' read -r db q cut base <<<"$(define "$t")"
    echo "SELECT rdl_create_task(:'t', :'q', :'c') IS NOT NULL" \
      | bench_psql -d "$db" -v ON_ERROR_STOP=1 -v t="$t" -v q="$q" -v c="$cut" >/dev/null
    for o in "$@"; do
        for s in "${seeds[@]}"; do
            opts=$(bench_psql -d "$db" -Atc "SELECT ('$base'::jsonb || '$o'::jsonb || jsonb_build_object('seed', $s))::text")
            t0=$(date +%s)
            log=$(echo "CALL rdl_train(:'t', :'o')" | bench_psql -d "$db" -v ON_ERROR_STOP=1 -v t="$t" -v o="$opts" 2>&1)
            t1=$(date +%s)
            epochs=$(grep -c " epoch [0-9]*/" <<<"$log")
            m=$(bench_psql -d "$db" -Atc "SELECT coalesce(e->>'auroc', e->>'mae') FROM rdl_evaluate('$t', 'test') e")
            printf '%s\t%s\t%s\t%.4f\t%s\t%s\n' "$t" "$o" "$s" "$m" "$epochs" "$((t1 - t0))" | tee -a "$results" \
              | awk -F'\t' '{printf "%-16s %-28s seed %s: test %s, %s epochs, %s s\n", $1, $2, $3, $4, $5, $6}'
        done
    done
done
echo "== mean (min – max) over seeds ${seeds[*]}; AUROC (higher is better) or MAE (lower is better)"
awk -F'\t' '{k = $1 "\t" $2; n[k]++; s[k] += $4; if (!(k in lo) || $4 < lo[k]) lo[k] = $4; if (!(k in hi) || $4 > hi[k]) hi[k] = $4; if (!(k in ord)) ord[k] = NR}
    END { for (k in n) { split(k, p, "\t"); printf "%d\t%-16s %-28s %.3f (%.3f – %.3f)\n", ord[k], p[1], p[2], s[k] / n[k], lo[k], hi[k] } }' "$results" | sort -n | cut -f2-
rm -f "$results"
