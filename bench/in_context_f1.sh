#!/usr/bin/env bash
# In-context answers on rel-f1 through SQL (`rdl.in_context = on`, no training): for
# driver-dnf, driver-top3 and driver-position (RelBench cutoffs, tasks named icl-*, never
# trained) it scores the whole test split with rdl_predict_batch, one call per test anchor,
# from the shipped pretrained model (which never saw F1), and prints per task:
#   - the zero-shot test metric and the batch rate (entities/s, labels and examples of
#     each anchor included: nothing is cached between calls yet);
#   - one rdl_predict on a new connection (cold: task, labels, examples, model) and the
#     p50 of 10 more on that connection (warm; the examples are still labelled afresh);
#   - rdl_predict_detail's accuracy estimate at the first test anchor (the score the model
#     would have had asked at the newest anchor closed by then), next to the real metric.
# Usage: bench/in_context_f1.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
. "$RDL_ROOT/bench/f1_tasks.sh"
bench_db
out="$RDL_ROOT/build/icl/f1"; mkdir -p "$out"
for t in driver-dnf driver-top3 driver-position; do
    echo "SELECT rdl_create_task(:'t', :'q', '{\"val_cutoff\": \"2005-01-01\", \"test_cutoff\": \"2010-01-01\"}') IS NOT NULL WHERE NOT EXISTS (SELECT 1 FROM rdl.tasks WHERE name = :'t')" \
      | bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v t="icl-$t" -v q="$(f1_query "$t")" >/dev/null
    bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v t="icl-$t" -v csv="$out/$t.csv" -At 2>&1 <<'SQL' | grep -v "^NOTICE\|^SET" | sed "s/^/$t: /"
SET rdl.in_context = on;
SELECT set_config('rdl_bench.task', :'t', false) IS NULL;
CREATE TEMP TABLE test AS SELECT * FROM rdl_task_table(:'t', 'test');
CREATE TEMP TABLE answers (entity_id text, anchor timestamptz, prediction float8);
CREATE TEMP TABLE took (secs float8);
DO $$ DECLARE a timestamptz; t0 timestamptz := clock_timestamp(); BEGIN
  FOR a IN SELECT DISTINCT anchor_time FROM test ORDER BY 1 LOOP
    INSERT INTO answers SELECT b.entity_id, a, b.prediction
    FROM rdl_predict_batch(current_setting('rdl_bench.task'),
                           ARRAY(SELECT entity_id::int FROM test WHERE anchor_time = a), a) b;
  END LOOP;
  INSERT INTO took VALUES (extract(epoch FROM clock_timestamp() - t0));
END $$;
COPY (SELECT t.entity_id, t.anchor_time, t.label, a.prediction FROM test t JOIN answers a ON a.entity_id = t.entity_id::text AND a.anchor = t.anchor_time WHERE a.prediction IS NOT NULL) TO STDOUT CSV \g :csv
SELECT format('batch: %s answers at %s anchors in %s s, %s entities/s', count(*),
              count(DISTINCT anchor), round((SELECT secs FROM took)::numeric, 1),
              round(count(*) / (SELECT secs FROM took))) FROM answers;
SELECT 'estimate at the first test anchor: ' || (rdl_predict_detail(:'t', t.entity_id::int, t.anchor_time)->'estimate')::text
FROM test t ORDER BY t.anchor_time, t.entity_id LIMIT 1;
SQL
    python3 - "$out/$t.csv" "$t" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
y = [float(r[2]) for r in rows]; p = [float(r[3]) for r in rows]
if sys.argv[2] == "driver-position":
    m = "MAE %.3f" % (sum(abs(a - b) for a, b in zip(p, y)) / len(y))
else:
    pos = [a for a, b in zip(p, y) if b > 0.5]; neg = [a for a, b in zip(p, y) if b <= 0.5]
    m = "AUROC %.3f" % (sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg)))
print(f"{sys.argv[2]}: zero-shot (in context, F1 never seen): {m} over {len(rows)} test rows")
PY
    # One answer on a new connection (cold), then 10 more on it (warm).
    bench_psql -d rdl_bench -At -v t="icl-$t" 2>&1 <<'SQL' | grep -v "^NOTICE\|^SET" | sed "s/^/$t: /"
SET rdl.in_context = on;
SELECT set_config('rdl_bench.task', :'t', false) IS NULL;
CREATE TEMP TABLE lat (i int, ms float8);
DO $$ DECLARE t0 timestamptz; BEGIN
  FOR i IN 0..10 LOOP
    t0 := clock_timestamp();
    PERFORM rdl_predict(current_setting('rdl_bench.task'), 20, '2010-06-01'::timestamptz + i * interval '1 day');
    INSERT INTO lat VALUES (i, extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END $$;
SELECT format('one rdl_predict: cold (new connection) %s ms; warm p50 %s ms over 10',
              round((SELECT ms FROM lat WHERE i = 0)::numeric),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric)) FROM lat WHERE i > 0;
SQL
done
