#!/usr/bin/env bash
# Recommendation benchmark: on the bench cluster (build/bench, port ${RDL_BENCH_PORT:-25417})
# trains a ranking model on
#   f1    PREDICT LIST_DISTINCT(results.constructor_id, 0, 365, days) RANK TOP 3 FOR EACH drivers.driver_id
#   shop  PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 10 FOR EACH customers.customer_id
#         (examples/shop: 3,000 customers, 1,000 products)
# and prints, on the test split, MAP@k / recall@k / NDCG@k of the model next to the two
# baselines rdl_evaluate computes (popularity in the last window; the entity's own most
# frequent past items), with the training time. Then, on a shop with 10,000 products
# (shop10k), rdl_recommend latency over 200 customers in a fresh backend — first without the
# day's item index (the first call builds it), then with it built ahead
# (rdl_recommend_prepare, timed separately): the first call, and p50/p99 of the rest.
# Usage: bench/recommend.sh [f1|shop|latency ...]     (default: all three)
#   RDL_BENCH_F1_OPTS / RDL_BENCH_SHOP_OPTS / RDL_BENCH_10K_OPTS override the training options.
# Assumes the extension is installed (scripts/demo.sh or cargo pgrx install).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
parts=("$@"); [ ${#parts[@]} -gt 0 ] || parts=(f1 shop latency)
f1_opts="${RDL_BENCH_F1_OPTS:-{\"epochs\": 3, \"seed\": 1, \"time_budget_s\": 1200\}}"
shop_opts="${RDL_BENCH_SHOP_OPTS:-{\"max_train\": 3000, \"epochs\": 3, \"seed\": 1, \"time_budget_s\": 1200\}}"
k10_opts="${RDL_BENCH_10K_OPTS:-{\"max_train\": 1000, \"epochs\": 1, \"seed\": 1\}}"

bench_dir="$RDL_ROOT/build/bench"; bench_port="${RDL_BENCH_PORT:-25417}"
cluster_start "$bench_dir" "$bench_port"
psql_() { bench_psql "$@"; }
have_db() { psql_ -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1; }
fresh() { psql_ -d "$1" -c "DROP EXTENSION IF EXISTS rdl CASCADE" -c "CREATE EXTENSION rdl" 2>/dev/null; }

# train DB TASK QUERY TASK_OPTIONS TRAIN_OPTIONS: prints the training time (s).
train() {
    echo "SELECT rdl_create_task(:'t', :'q', :'o') IS NOT NULL" \
      | psql_ -d "$1" -v ON_ERROR_STOP=1 -v t="$2" -v q="$3" -v o="$4" >/dev/null
    local t0 t1; t0=$(date +%s.%N)
    echo "CALL rdl_train(:'t', :'o')" | psql_ -d "$1" -v ON_ERROR_STOP=1 -v t="$2" -v o="$5" 2>&1 | sed 's/^/  /' >&2
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

# report DB TASK TRAIN_SECONDS: the test metrics table.
report() {
    PGOPTIONS="-c rdl_bench.task=$2" psql_ -d "$1" -At <<SQL
CREATE TEMP TABLE e AS SELECT rdl_evaluate(current_setting('rdl_bench.task'), 'test') AS e;
SELECT format('%s: test split, %s examples, k = %s, candidate recall %s, trained in %s s',
              current_setting('rdl_bench.task'), e->>'examples', e->>'k',
              round((e->>'candidate_recall')::numeric, 3), round($3::numeric)) FROM e;
SELECT format('  %-34s MAP@k %s   recall@k %s   NDCG@k %s', name,
              to_char((m->>'map_at_k')::numeric, '0.0000'), to_char((m->>'recall_at_k')::numeric, '0.0000'),
              to_char((m->>'ndcg_at_k')::numeric, '0.0000'))
FROM e, LATERAL (VALUES (1, 'rdl model', e),
                        (2, 'baseline: popularity (last window)', e->'baselines'->'popularity'),
                        (3, 'baseline: own most frequent items', e->'baselines'->'own_history'),
                        (4, '(reference: own most recent items)', e->'reference_own_most_recent')) v(o, name, m)
ORDER BY o;
SQL
}

for part in "${parts[@]}"; do
case "$part" in
f1)
    have_db rdl_bench || { psql_ -d postgres -c "CREATE DATABASE rdl_bench"; "$RDL_ROOT/examples/f1/load.sh" -h "$bench_dir" -p "$bench_port" -U postgres -d rdl_bench; }
    fresh rdl_bench
    echo "== f1: training options $f1_opts"
    s=$(train rdl_bench f1-team \
        'PREDICT LIST_DISTINCT(results.constructor_id, 0, 365, days) RANK TOP 3 FOR EACH drivers.driver_id' \
        '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}' "$f1_opts")
    report rdl_bench f1-team "$s"
    ;;
shop)
    have_db shop || { psql_ -d postgres -c "CREATE DATABASE shop"; "$RDL_ROOT/examples/shop/load.sh" -h "$bench_dir" -p "$bench_port" -U postgres -d shop; }
    fresh shop
    echo "== shop: training options $shop_opts"
    s=$(train shop next-products \
        'PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 10 FOR EACH customers.customer_id' \
        '{"val_cutoff": "2024-07-03", "test_cutoff": "2024-10-01", "eval_windows": 3}' "$shop_opts")
    report shop next-products "$s"
    ;;
latency)
    have_db shop10k || { psql_ -d postgres -c "CREATE DATABASE shop10k"; "$RDL_ROOT/examples/shop/load.sh" --customers 5000 --products 10000 -h "$bench_dir" -p "$bench_port" -U postgres -d shop10k; }
    fresh shop10k
    echo "== shop10k ($(psql_ -d shop10k -Atc "SELECT count(*) FROM products") products, $(psql_ -d shop10k -Atc "SELECT count(*) FROM orders") orders): training options $k10_opts"
    s=$(train shop10k next-products \
        'PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 10 FOR EACH customers.customer_id' \
        '{"val_cutoff": "2024-07-03", "test_cutoff": "2024-10-01", "eval_windows": 3}' "$k10_opts")
    echo "trained in $(printf %.0f "$s") s"
    # First a fresh backend without the day's item index (what a new connection pays), then
    # one that builds it ahead with rdl_recommend_prepare.
    for mode in unprepared prepared; do
        PGOPTIONS="-c rdl_bench.mode=$mode" psql_ -d shop10k -At <<'SQL'
SET rdl.threads = 1;
SELECT format('rdl_recommend_prepare: item index at %s, %s items in the pool, %s embedded, %s s (log and statistics %s s)',
              p->>'item_side_time', p->>'pool_items', p->>'embedded_items',
              round((p->>'seconds')::numeric, 1), round((p->>'index_seconds')::numeric, 1))
FROM rdl_recommend_prepare('next-products', '2024-12-01') p
WHERE current_setting('rdl_bench.mode') = 'prepared';
CREATE TEMP TABLE lat (i int, ms float8, n int);
DO $$
DECLARE c int; t0 timestamptz; n int; i int := 0;
BEGIN
  FOR c IN SELECT customer_id FROM customers WHERE created_at <= '2024-12-01' ORDER BY customer_id LIMIT 200 LOOP
    i := i + 1;
    t0 := clock_timestamp();
    SELECT count(*) INTO n FROM rdl_recommend('next-products', c, 10, '2024-12-01');
    INSERT INTO lat VALUES (i, extract(epoch FROM clock_timestamp() - t0) * 1000, n);
  END LOOP;
END $$;
SELECT format('%s: rdl_recommend latency, %s customers (10 items each, %s products): first call %s ms; calls 2-%s p50 %s ms, p99 %s ms, max %s ms',
              current_setting('rdl_bench.mode'), count(*) + 1, (SELECT count(*) FROM products),
              round((SELECT ms FROM lat WHERE i = 1)::numeric, 1), count(*) + 1,
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1)) FROM lat WHERE i > 1;
SQL
    done
    ;;
*) echo "unknown part $part (f1, shop, latency)" >&2; exit 2 ;;
esac
done
