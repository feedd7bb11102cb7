#!/usr/bin/env bash
# Load-test POST /v1/recommendations (full decision, auth on) against `mlflow models serve`.
#
# Run from the repository after `python3 dev.py demo --no-serve` (it leaves a champion model in
# ./mlflow.db and the feature table in ./keepwise-data). Needs Debian's wrk (apt-get install wrk).
# Every load is bounded (DURATION per run) and targets loopback only.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=${BIN:-.venv/bin}
DURATION=${DURATION:-10s}
KEEPWISE_PORT=${KEEPWISE_PORT:-8101}
MLFLOW_PORT=${MLFLOW_PORT:-8102}
LUA=experiments/benchmarks/api/post_one.lua
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

as_of=$("$BIN/python" -c "import json; print(json.load(open('keepwise-data/world/world.json'))['export_date'])")
"$BIN/python" -m experiments.benchmarks.api.bodies --features keepwise-data/features.parquet \
    --as-of "$as_of" --out "$work"
token=$("$BIN/keepwise" api-key --name bench --role viewer --keys-file "$work/keys.toml" | tail -1)

KEEPWISE_DATABASE_URL="sqlite:///$work/bench.db" "$BIN/keepwise" serve --port "$KEEPWISE_PORT" \
    --keys-file "$work/keys.toml" > "$work/keepwise.log" 2>&1 &
PATH="$BIN:$PATH" MLFLOW_TRACKING_URI=sqlite:///mlflow.db "$BIN/mlflow" models serve -m models:/keepwise@champion \
    -p "$MLFLOW_PORT" --env-manager local > "$work/mlflow.log" 2>&1 &
for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$KEEPWISE_PORT/health/ready" > /dev/null \
        && curl -sf "http://127.0.0.1:$MLFLOW_PORT/ping" > /dev/null; then break; fi
    sleep 1
done

run() {  # label, url, body, token, threads, connections, delay_ms
    local label=$1 url=$2 body=$3 key=$4 threads=$5 conns=$6 pause=$7
    printf '%-48s ' "$label"
    BODY_FILE="$work/$body" TOKEN="$key" DELAY_MS="$pause" \
        wrk -t"$threads" -c"$conns" -d"$DURATION" -s "$LUA" "$url" | tail -1
}
cpu_ms() {  # CPU milliseconds (user + system) the process has used so far, all threads
    local pid=$1
    awk '{print $14 + $15}' /proc/"$pid"/task/*/stat \
        | awk -v hz="$(getconf CLK_TCK)" '{t += $1} END {printf "%.0f", t / hz * 1000}'
}
keepwise="http://127.0.0.1:$KEEPWISE_PORT/v1/recommendations"
mlflow="http://127.0.0.1:$MLFLOW_PORT/invocations"
server_pid=$(pgrep -f "keepwise serve --port $KEEPWISE_PORT" | head -1)
run "keepwise, 1 customer, concurrency 1" "$keepwise" one.json "$token" 1 1 0
before=$(cpu_ms "$server_pid")
run "keepwise, 1 customer, concurrency 32" "$keepwise" one.json "$token" 2 32 0
echo "    server CPU ms (all threads): $before before, $(cpu_ms "$server_pid") after"
# Paced: each of 12 connections waits 10 ms after every answer, about 1,000 requests/s in all
# at a 1-2 ms latency (wrk has no open-loop rate; the achieved rate is printed).
run "keepwise, 1 customer, paced ~1000/s" "$keepwise" one.json "$token" 1 12 10
# drivers=0: the same decision without the churn drivers' TreeSHAP (see the API guide)
run "keepwise, 1 customer, drivers=0, concurrency 32" "$keepwise?drivers=0" one.json "$token" 2 32 0
run "keepwise, 1 customer, drivers=0, paced ~1000/s" "$keepwise?drivers=0" one.json "$token" 1 12 10
run "keepwise, 100 customers, concurrency 1" "$keepwise" batch100.json "$token" 1 1 0
run "keepwise, 100 customers, drivers=0, conc. 1" "$keepwise?drivers=0" batch100.json "$token" 1 1 0
run "mlflow models serve, 1 customer, conc. 1" "$mlflow" mlflow_one.json "" 1 1 0
run "mlflow models serve, 1 customer, conc. 32" "$mlflow" mlflow_one.json "" 2 32 0
