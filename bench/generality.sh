#!/usr/bin/env bash
# The generality benchmark (bench/generality/README.md): rdl against the classical baseline
# on generated databases, one (seed, task) pair per line of bench/generality/pairs.txt.
#
#   bench/generality.sh [train options jsonb]      e.g. bench/generality.sh '{"epochs": 10}'
#
# Needs the extension installed (scripts/demo.sh or cargo pgrx install) and the baseline's
# Python packages (pip install -r bench/generality/requirements.txt). Uses the bench cluster
# (build/bench, port RDL_BENCH_PORT, default 25417), one database gen_<seed> per seed, and
# writes everything under build/generality/: the generated databases (db<seed>/), the splits
# rdl exports (db<seed>/rdl_splits/<task>/), results/<seed>-<task>.{rdl,baseline}.json and
# summary.md. Environment: RDL_GEN_PAIRS (default bench/generality/pairs.txt),
# RDL_GEN_SCALE (medium), RDL_GEN_SKIP_RDL=1 (generate, load and run the baseline only: it
# is deterministic, so it may share the machine; rdl's runs must not, its schedule follows
# the time budget). Re-running skips generation and loading already done.
. "$(dirname "$0")/../scripts/lib.sh"
train_opts="${1:-}"; [ -n "$train_opts" ] || train_opts='{}'
pairs="${RDL_GEN_PAIRS:-$RDL_ROOT/bench/generality/pairs.txt}"
scale="${RDL_GEN_SCALE:-medium}"
out="$RDL_ROOT/build/generality"
mkdir -p "$out/results"
bench_dir="$RDL_ROOT/build/bench"; bench_port="${RDL_BENCH_PORT:-25417}"
cluster_start "$bench_dir" "$bench_port"

phase_start "build the generator"
(cd "$RDL_ROOT" && cargo build --release -q -p rdl-engine --example gen_db)
gen_db="${CARGO_TARGET_DIR:-$RDL_ROOT/target}/release/examples/gen_db"
phase_end

# Whether the split files are those the baseline result was computed on.
splits_same() { [ -f "$2.splits" ] && [ "$(cat "$1"/*.csv | sha256sum)" = "$(cat "$2.splits")" ]; }

# Anchors print in UTC, as the generator writes them.
export PGTZ=UTC
# The pairs come on fd 3: nothing in the loop can eat them from stdin.
while read -r seed task <&3; do
    [ -n "$seed" ] || continue
    db="gen_$seed"; dir="$out/db$seed"
    if [ ! -f "$dir/tasks.json" ]; then
        phase_start "generate and load seed $seed"
        "$gen_db" --seed "$seed" --scale "$scale" --out "$dir" --splits
        chmod -R o+rX "$out"
        bench_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        "$dir/load.sh" -h "$bench_dir" -p "$bench_port" -U postgres -d "$db"
        bench_psql -d "$db" -c "CREATE EXTENSION IF NOT EXISTS rdl"
        phase_end
    fi
    phase_start "seed $seed task $task"
    query=$(python3 -c "import json,sys; t=[t for t in json.load(open('$dir/tasks.json'))['tasks'] if t['name']=='$task'][0]; print(t['query'])")
    options=$(python3 -c "import json; t=[t for t in json.load(open('$dir/tasks.json'))['tasks'] if t['name']=='$task'][0]; print(json.dumps(t['options']))")
    splits="$dir/rdl_splits/$task"; mkdir -p "$splits"; chmod -R o+rwX "$out"
    bench_psql -d "$db" -v ON_ERROR_STOP=1 \
        -c "SELECT rdl_drop_task('$task') FROM rdl_tasks WHERE name = '$task'" \
        -c "SELECT rdl_create_task('$task', \$q\$$query\$q\$, '$options'::jsonb) IS NOT NULL AS created"
    for s in train val test; do
        bench_psql -d "$db" -c "\\copy (SELECT * FROM rdl_task_table('$task', '$s')) TO '$splits/$s.csv' CSV HEADER"
    done
    # rdl's task tables must hold exactly the generator's labels.
    python3 "$RDL_ROOT/bench/generality/compare_splits.py" "$dir/splits" "$dir/rdl_splits" "$task"
    if [ "${RDL_GEN_SKIP_RDL:-0}" != 1 ]; then
        t0=$(date +%s)
        bench_psql -d "$db" -v ON_ERROR_STOP=1 -c "CALL rdl_train('$task', '$train_opts'::jsonb)"
        t1=$(date +%s)
        bench_psql -d "$db" -Atc "SELECT jsonb_set(rdl_evaluate('$task', 'test'), '{train_seconds}', to_jsonb($t1 - $t0))" \
            > "$out/results/$seed-$task.rdl.json"
    fi
    # The baseline is deterministic given its split files: it is re-run only when they changed.
    base="$out/results/$seed-$task.baseline.json"
    if [ ! -f "$base" ] || ! splits_same "$splits" "$base"; then
        python3 "$RDL_ROOT/bench/generality/baseline.py" --task "$task" --tasks-json "$dir/tasks.json" \
            --splits "$splits" --pg="-h $bench_dir -p $bench_port -U postgres -d $db" \
            --out "$base" > /dev/null
        cat "$splits"/*.csv | sha256sum > "$base.splits"
    fi
    phase_end
done 3< <(grep -v '^#' "$pairs")

python3 "$RDL_ROOT/bench/generality/summarize.py" "$out/results" | tee "$out/summary.md"
