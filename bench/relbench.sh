#!/usr/bin/env bash
# RelBench rel-f1 benchmark: on a fresh cluster (build/bench, port ${RDL_BENCH_PORT:-25417})
# with the F1 database, defines driver-dnf, driver-top3 and driver-position with RelBench's
# cutoffs, trains each with the given options, and prints test metrics next to the
# published baselines, training wall time, and rdl_predict latency and throughput.
# Usage: bench/relbench.sh [train options jsonb] [task ...]
#   bench/relbench.sh '{}'                                 # defaults (the accuracy bar)
#   bench/relbench.sh '{"max_train": 3000, "epochs": 3}' driver-dnf   # a quick look
# Assumes the extension is installed (scripts/demo.sh or cargo pgrx install).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
. "$RDL_ROOT/bench/f1_tasks.sh"
opts="${1:-{\}}"; shift || true
tasks=("$@"); [ ${#tasks[@]} -gt 0 ] || tasks=(driver-dnf driver-top3 driver-position)
bench_db
psql_() { bench_psql "$@"; }

published() {
    case "$1" in
    driver-dnf) echo "AUROC | LightGBM 0.686 | RDL GNN 0.726 | RelGNN 0.753 | RT 0.842 | KumoRFM-2 0.846" ;;
    driver-top3) echo "AUROC | LightGBM 0.739 | RDL GNN 0.755 | RelGNN 0.857 | RT 0.921 | KumoRFM-2 0.922" ;;
    driver-position) echo "MAE   | LightGBM 4.170 | RDL GNN 4.022 | RelGNN 3.798" ;;
    esac
}

echo "train options: $opts"
for t in "${tasks[@]}"; do
    # psql interpolates :'vars' only in scripts, not in -c.
    echo "SELECT rdl_create_task(:'t', :'q', '{\"val_cutoff\": \"2005-01-01\", \"test_cutoff\": \"2010-01-01\"}') IS NOT NULL" \
      | psql_ -d rdl_bench -v ON_ERROR_STOP=1 -v t="$t" -v q="$(f1_query "$t")" >/dev/null
    t0=$(date +%s)
    echo "CALL rdl_train(:'t', :'o')" | psql_ -d rdl_bench -v ON_ERROR_STOP=1 -v t="$t" -v o="$opts" 2>&1 | sed 's/^/  /'
    t1=$(date +%s)
    echo "== $t: trained in $((t1 - t0))s"
    echo "SELECT 'test metrics: ' || rdl_evaluate(:'t', 'test')::text" | psql_ -d rdl_bench -v t="$t" -At
    echo "published (test): $(published "$t")"
    # Latency: 200 single-entity calls; throughput: the whole test table in one statement.
    PGOPTIONS="-c rdl_bench.task=$t" psql_ -d rdl_bench -At <<'SQL'
CREATE TEMP TABLE lat (ms float8);
DO $$
DECLARE r record; t0 timestamptz;
BEGIN
  FOR r IN SELECT entity_id, anchor_time FROM rdl_task_table(current_setting('rdl_bench.task'), 'test') LIMIT 200 LOOP
    t0 := clock_timestamp();
    PERFORM rdl_predict(current_setting('rdl_bench.task'), r.entity_id::int, r.anchor_time);
    INSERT INTO lat VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END $$;
SELECT format('rdl_predict latency over %s calls: p50 %s ms, p99 %s ms', count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2)) FROM lat;
CREATE TEMP TABLE tp AS SELECT clock_timestamp() AS t0;
CREATE TEMP TABLE scored AS
SELECT * FROM rdl_predict_batch(current_setting('rdl_bench.task'),
  ARRAY(SELECT DISTINCT entity_id::int FROM rdl_task_table(current_setting('rdl_bench.task'), 'test')),
  '2010-01-01 00:00:00+00');
SELECT format('rdl_predict_batch over every test driver: %s entities at %s entities/s', count(*),
              round(count(*) / extract(epoch FROM clock_timestamp() - (SELECT t0 FROM tp)))) FROM scored;
SQL
done
