#!/usr/bin/env bash
# The README's explanation example: on the bench cluster (build/bench, port
# ${RDL_BENCH_PORT:-25417}, F1 in rdl_bench, a fresh extension) trains driver-top3 with the
# small settings the explain test uses and prints, for Sebastian Vettel (driver 20) as of
# 2010-06-01: the explanation's sentence and per-table shares, the model's selection AUROC
# (the early-stopping split: optimistic) and test AUROC (held out), and the what-if
# prediction with every qualifying row in his context set to 15th.
# Usage: bench/explain.sh [train options jsonb]   (default {"max_train": 1000, "epochs": 4, "seed": 2})
# Assumes the extension is installed (scripts/demo.sh or cargo pgrx install).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
opts="${1:-{\"max_train\": 1000, \"epochs\": 4, \"seed\": 2\}}"
bench_db
psql_() { bench_psql -d rdl_bench -v ON_ERROR_STOP=1 "$@"; }

echo "== driver-top3, training options $opts"
psql_ -At >/dev/null <<'SQL'
SELECT rdl_create_task('driver-top3',
  'PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driver_id
   ASSUMING COUNT(qualifying.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}');
SQL
echo "SET client_min_messages = warning; CALL rdl_train('driver-top3', :'o')" | psql_ -v o="$opts"
psql_ -At <<'SQL'
SELECT format('selection AUROC %s (early-stopping split, optimistic); test AUROC %s (held out)',
              round((metrics->'selection'->>'auroc')::numeric, 3),
              round((rdl_evaluate('driver-top3', 'test')->>'auroc')::numeric, 3))
FROM rdl.models WHERE task = 'driver-top3' AND active;
CREATE TEMP TABLE e AS SELECT rdl_explain('driver-top3', 20, '2010-06-01', 3) AS j;
SELECT 'sentence: ' || (j->>'sentence') FROM e;
SELECT 'by_table: ' || string_agg(format('%s %s', x->>'table', round((x->>'share')::numeric, 3)), ', '
                                  ORDER BY (x->>'share')::float8 DESC)
FROM e, jsonb_array_elements(j->'by_table') x;
SELECT format('agreement (Spearman, rollout vs gradient x input) %s', round((j->>'agreement')::numeric, 3)) FROM e;
SELECT format('p %s, p if every qualifying row were 15th %s',
              rdl_predict('driver-top3', 20, '2010-06-01'),
              rdl_predict('driver-top3', 20, '2010-06-01', assuming => '{"qualifying.position": 15}'));
SQL
