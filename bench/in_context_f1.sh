#!/usr/bin/env bash
# In-context answers on rel-f1 through SQL (`rdl.in_context = on`, no training): for
# driver-dnf, driver-top3 and driver-position (RelBench cutoffs, tasks named icl-*, never
# trained) scores every K-th row of the test split with rdl_predict from the shipped
# pretrained model (which never saw F1), and prints the test metric and the seconds per
# answer (each answer labels and gathers its examples afresh: no cache yet).
# Usage: bench/in_context_f1.sh [K (default 4)]
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
. "$RDL_ROOT/bench/f1_tasks.sh"
k="${1:-4}"
bench_db
out="$RDL_ROOT/build/icl/f1"; mkdir -p "$out"
for t in driver-dnf driver-top3 driver-position; do
    echo "SELECT rdl_create_task(:'t', :'q', '{\"val_cutoff\": \"2005-01-01\", \"test_cutoff\": \"2010-01-01\"}') IS NOT NULL WHERE NOT EXISTS (SELECT 1 FROM rdl.tasks WHERE name = :'t')" \
      | bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v t="icl-$t" -v q="$(f1_query "$t")" >/dev/null
    t0=$(date +%s.%N)
    bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v t="icl-$t" -v k="$k" -c "SET rdl.in_context = on" \
      -c "\\copy (SELECT x.entity_id, x.anchor_time, x.label, rdl_predict('icl-$t', x.entity_id::int, x.anchor_time) FROM (SELECT *, row_number() OVER (ORDER BY anchor_time, entity_id) AS n FROM rdl_task_table('icl-$t', 'test')) x WHERE x.n % $k = 0) TO '$out/$t.csv' CSV" 2>&1 | grep -v "^NOTICE" || true
    t1=$(date +%s.%N)
    python3 - "$out/$t.csv" "$t" "$t0" "$t1" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r[3] != ""]
y = [float(r[2]) for r in rows]; p = [float(r[3]) for r in rows]
secs = (float(sys.argv[4]) - float(sys.argv[3])) / max(len(rows), 1)
if sys.argv[2] == "driver-position":
    m = "MAE %.3f" % (sum(abs(a - b) for a, b in zip(p, y)) / len(y))
else:
    pos = [a for a, b in zip(p, y) if b > 0.5]; neg = [a for a, b in zip(p, y) if b <= 0.5]
    m = "AUROC %.3f" % (sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg)))
print(f"== {sys.argv[2]} zero-shot (in context, F1 never seen): {m} over {len(rows)} test rows, {secs:.2f} s per answer")
PY
done
