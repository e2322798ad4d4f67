#!/usr/bin/env bash
# Load test of rdl's background worker: pgbench with 16 clients for 60 s, each transaction
# one rdl_predict on a random F1 driver (driver-dnf, as of 2010-01-01), in four runs:
#   in-process                 (rdl.use_worker = off: every backend computes itself)
#   worker                     (predictions go to the one background worker)
#   in-process + rdl_train     (a training of the same task runs in another session)
#   worker + rdl_train
# and prints, per run: transactions/s, latency p50/p99, errors, the worker's mean batch
# (requests per forward pass) and contexts per pass, and memory per backend (RSS, and
# private = USS, the memory a backend adds) and of the worker.
# The cluster (build/bench, port ${RDL_BENCH_PORT:-25417}) is restarted with
# shared_preload_libraries = 'rdl'. Assumes the extension is installed.
# Usage: bench/worker_load.sh      env: RDL_LOAD_CLIENTS (16), RDL_LOAD_SECONDS (60),
#   RDL_LOAD_TRAIN (options of the model served), RDL_LOAD_BG_TRAIN (of the concurrent one)
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
clients="${RDL_LOAD_CLIENTS:-16}"
seconds="${RDL_LOAD_SECONDS:-60}"
serve_opts="${RDL_LOAD_TRAIN:-{\"max_train\": 1000, \"epochs\": 2, \"seed\": 1\}}"
bg_opts="${RDL_LOAD_BG_TRAIN:-{\"max_train\": 3000, \"epochs\": 5, \"seed\": 2\}}"

bench_dir="$RDL_ROOT/build/bench"; bench_port="${RDL_BENCH_PORT:-25417}"
cluster_stop "$bench_dir"
cluster_start "$bench_dir" "$bench_port" "-c shared_preload_libraries=rdl -c max_connections=64"
bench_db
psql_() { bench_psql -d rdl_bench "$@"; }
work="$bench_dir/load"; rm -rf "$work"; mkdir -p "$work"

echo "== setup: driver-dnf, trained with $serve_opts"
psql_ -v ON_ERROR_STOP=1 -q <<SQL
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created \gset
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '$serve_opts');
-- Dense keys so that every random pick is an existing driver (ids have gaps).
DROP TABLE IF EXISTS bench_drivers;
CREATE TABLE bench_drivers AS SELECT row_number() OVER (ORDER BY driver_id) - 1 AS k, driver_id FROM drivers;
ALTER TABLE bench_drivers ADD PRIMARY KEY (k);
SQL
n_drivers=$(psql_ -Atc "SELECT count(*) FROM bench_drivers")
cat >"$work/predict.sql" <<SQL
\set k random(0, $((n_drivers - 1)))
SELECT rdl_predict('driver-dnf', driver_id, '2010-01-01+00') FROM bench_drivers WHERE k = :k;
SQL
pgbench_="$PG_BIN/pgbench"

# Memory of the pgbench backends (mean kB) and of the worker, from /proc/<pid>/smaps_rollup.
mem_of() { awk '/^Rss:/{r=$2} /^Private_Clean:|^Private_Dirty:/{p+=$2} END{print r+0, p+0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo "0 0"; }
sample_memory() {
    local out="$1" pids rss=0 priv=0 n=0 r p
    pids=$(psql_ -Atc "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'")
    for pid in $pids; do read -r r p < <(mem_of "$pid"); rss=$((rss + r)); priv=$((priv + p)); n=$((n + 1)); done
    local wpid; wpid=$(psql_ -Atc "SELECT rdl_status()->>'worker_pid'")
    read -r r p < <(mem_of "${wpid:-0}")
    if [ "$n" -gt 0 ]; then echo "$((rss / n)) $((priv / n)) $r $p $n" >"$out"; else echo "0 0 $r $p 0" >"$out"; fi
}
status_num() { psql_ -Atc "SELECT coalesce((rdl_status()->>'$1')::bigint, 0)"; }

results=()
run() {
    local name="$1" use_worker="$2" train="$3" tag
    tag="$(echo "$name" | tr ' +' '__')"
    echo "== run: $name ($clients clients, ${seconds}s; load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
    local bgpid=""
    if [ "$train" = 1 ]; then
        (psql_ -q -c "SET client_min_messages = warning" -c "CALL rdl_train('driver-dnf', '$bg_opts')" >"$work/$tag.train.log" 2>&1) &
        bgpid=$!
        sleep 5  # let it get going (labels, gathering)
    fi
    local r0 p0 c0; r0=$(status_num requests_served); p0=$(status_num forward_passes); c0=$(status_num contexts_served)
    (sleep $((seconds * 3 / 4)); sample_memory "$work/$tag.mem") &
    local mempid=$!
    (cd "$work" && PGOPTIONS="-c rdl.use_worker=$use_worker" "$pgbench_" -n -h "$bench_dir" -p "$bench_port" -U postgres \
        -c "$clients" -j 2 -T "$seconds" -f predict.sql -l --log-prefix="$tag.log" rdl_bench >"$tag.pgbench" 2>&1) || true
    wait "$mempid" || true
    local r1 p1 c1; r1=$(status_num requests_served); p1=$(status_num forward_passes); c1=$(status_num contexts_served)
    local train_state="-"
    if [ -n "$bgpid" ]; then
        if kill -0 "$bgpid" 2>/dev/null; then
            psql_ -Atc "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CALL rdl_train%' AND pid <> pg_backend_pid()" >/dev/null
            train_state="running throughout (cancelled at the end)"
        else
            train_state="finished during the run"
        fi
        wait "$bgpid" || true
    fi
    local tps failed aborted lat
    tps=$(grep -Eo 'tps = [0-9.]+' "$work/$tag.pgbench" | tail -1 | cut -d' ' -f3)
    failed=$(grep -Eo 'number of failed transactions: [0-9]+' "$work/$tag.pgbench" | grep -Eo '[0-9]+$' || echo 0)
    aborted=$(grep -c 'aborted in command' "$work/$tag.pgbench" || true)
    # Per-transaction logs: the third field is the latency in µs.
    lat=$(cat "$work/$tag".log.* 2>/dev/null | awk 'NF >= 6 {print $3}' | sort -n | awk '
        {a[NR] = $1}
        END {
            if (NR == 0) { print "0 0 0"; exit }
            i = int(NR * 0.50); if (i < 1) i = 1
            j = int(NR * 0.99); if (j < 1) j = 1
            printf "%d %.1f %.1f\n", NR, a[i] / 1000, a[j] / 1000
        }')
    local n p50 p99; read -r n p50 p99 <<<"$lat"
    local brss bpriv wrss wpriv nb; read -r brss bpriv wrss wpriv nb <"$work/$tag.mem"
    local dr=$((r1 - r0)) dp=$((p1 - p0)) dc=$((c1 - c0)) batch="-" ctxs="-"
    if [ "$dp" -gt 0 ]; then batch=$(awk -v a="$dr" -v b="$dp" 'BEGIN{printf "%.2f", a/b}'); ctxs=$(awk -v a="$dc" -v b="$dp" 'BEGIN{printf "%.2f", a/b}'); fi
    echo "   transactions $n, tps ${tps:-0}, p50 ${p50} ms, p99 ${p99} ms, failed ${failed:-0}, aborted clients ${aborted}"
    echo "   worker: $dr requests in $dp forward passes (mean batch $batch requests, $ctxs contexts)"
    echo "   memory: backend RSS $((brss / 1024)) MB, private $((bpriv / 1024)) MB (mean of $nb); worker RSS $((wrss / 1024)) MB, private $((wpriv / 1024)) MB"
    [ "$train" = 1 ] && echo "   training: $train_state"
    results+=("$(printf '| %-24s | %7s | %7s | %7s | %6s | %5s | %11s | %7s | %7s |' "$name" "${tps%.*}" "$p50" "$p99" "$(( ${failed:-0} + aborted ))" "$batch" "$((brss / 1024)) / $((bpriv / 1024))" "$((wrss / 1024))" "$dr")")
    grep -h 'aborted in command\|ERROR' "$work/$tag.pgbench" | head -3 | sed 's/^/   ! /' || true
}

run "in-process" off 0
run "worker" on 0
run "in-process + rdl_train" off 1
run "worker + rdl_train" on 1

echo
echo "rdl worker load test: $clients clients x ${seconds}s, rdl_predict on random drivers, $(nproc) cores"
echo "| run                      |   tps   | p50 ms  | p99 ms  | errors | batch | backend MB RSS / private | worker MB | worker requests |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
psql_ -Atc "SELECT 'worker status: ' || (rdl_status() - 'cached_models')::text"
