#!/usr/bin/env bash
# rdl_train's gathering with and without the second thread that encodes one piece while
# PostgreSQL gathers the next: F1 driver-dnf on both bench databases (see bench/speed.sh,
# which creates rdl_bench_unindexed), runs in pairs so that a machine whose speed drifts
# compares like with like. Each run: CALL rdl_train with {"time_budget_s": 60, "epochs": 1}
# (gathering is never cut short: 40% of 60 s is far more than it takes); prints the
# "contexts gathered and encoded" rate of each run, `rdl.threads = 1` (one thread: no
# overlap, and one-thread training) against the default.
# Usage: bench/gather_overlap.sh [pairs per database, default 3]
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
pairs="${1:-3}"
bench_db
for db in rdl_bench rdl_bench_unindexed; do
    if ! bench_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
        echo "$db: missing (bench/speed.sh creates it)"; continue
    fi
    bench_psql -d $db -Atc "SELECT rdl_create_task('driver-dnf', 'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0', '{\"val_cutoff\": \"2005-01-01\", \"test_cutoff\": \"2010-01-01\"}')" >/dev/null 2>&1 || true
    for i in $(seq "$pairs"); do
        for t in 1 0; do
            r=$(bench_psql -d $db -c "SET rdl.threads = $t" \
                -c "CALL rdl_train('driver-dnf', '{\"time_budget_s\": 60, \"epochs\": 1}')" 2>&1 |
                grep -o 'gathered and encoded in .*')
            echo "$db pair $i rdl.threads=$t ($([ $t = 1 ] && echo 'one thread' || echo 'default: overlapped')): $r"
        done
    done
done
