#!/usr/bin/env bash
# Load-test POST /v1/recommendations (full decision, auth on) against `mlflow models serve`.
#
# Run from the repository after `python3 dev.py demo --no-serve` (it leaves a champion model in
# ./mlflow.db and the feature table in ./keepwise-data). Needs Debian's wrk (apt-get install wrk).
# Every load is bounded (DURATION per run) and targets loopback only. The rows run ROUNDS times,
# interleaved (mlflow and keepwise alternate within each round), and the throughput ratios
# against `mlflow models serve` are printed per round: the machine may be shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=${BIN:-.venv/bin}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
KEEPWISE_PORT=${KEEPWISE_PORT:-18101}
MLFLOW_PORT=${MLFLOW_PORT:-18102}
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
curl -sf "http://127.0.0.1:$KEEPWISE_PORT/v1/model" -H "Authorization: Bearer $token" \
    | "$BIN/python" -c "import json, sys; m = json.load(sys.stdin); print('serving', m['model_name'], 'version', m['model_version'])"
keepwise="http://127.0.0.1:$KEEPWISE_PORT/v1/recommendations"
mlflow="http://127.0.0.1:$MLFLOW_PORT/invocations"
# both servers must answer the benchmark's customer with 200, else the rates time error paths
for check in "$keepwise $work/one.json" "$mlflow $work/mlflow_one.json"; do
    set -- $check
    status=$(curl -s -o "$work/check.out" -w '%{http_code}' -X POST "$1" -H "Authorization: Bearer $token" \
        -H "Content-Type: application/json" --data-binary @"$2")
    if [[ $status != 200 ]]; then
        echo "$1 answered $status to the benchmark body:" >&2; head -c 2000 "$work/check.out" >&2; exit 1
    fi
done

tree() {  # a process and all its descendants
    local pid=$1 child
    echo "$pid"
    for child in $(pgrep -P "$pid"); do tree "$child"; done
}
cpu_ms() {  # CPU milliseconds (user + system) used so far by a process tree, all threads
    local pid
    for pid in $(tree "$1"); do cat /proc/"$pid"/task/*/stat 2>/dev/null; done \
        | awk -v hz="$(getconf CLK_TCK)" '{t += $14 + $15} END {printf "%.0f", t / hz * 1000}'
}
run() {  # key, label, url, body, token, threads, connections, delay_ms
    local key=$1 label=$2 url=$3 body=$4 bearer=$5 threads=$6 conns=$7 pause=$8 line server
    server=$([[ $url == *"$MLFLOW_PORT"* ]] && echo "$mlflow_pid" || echo "$server_pid")
    local before; before=$(cpu_ms "$server")
    line=$(BODY_FILE="$work/$body" TOKEN="$bearer" DELAY_MS="$pause" \
        wrk -t"$threads" -c"$conns" -d"$DURATION" -s "$LUA" "$url" | tail -1)
    local used=$(( $(cpu_ms "$server") - before ))
    local requests=${line##*requests=}; requests=${requests%% *}
    printf '%-48s %s server_cpu_ms/request=%.3f\n' "$label" "$line" \
        "$(awk -v u="$used" -v r="$requests" 'BEGIN {print (r > 0 ? u / r : 0)}')"
    [[ $line == *"errors=0"* ]] || echo "    !! errors in this row: its rate and CPU are not comparable"
    echo "$key ${line##*rps=} $used $requests" | awk '{print $1, $2, $4, $5}' >> "$work/rps.$round"
}
server_pid=$(pgrep -f "keepwise serve --port $KEEPWISE_PORT" | head -1)
mlflow_pid=$(pgrep -f "mlflow models serve .*-p $MLFLOW_PORT" | head -1)
for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    run ml1 "mlflow models serve, 1 customer, conc. 1" "$mlflow" mlflow_one.json "" 1 1 0
    run kw1 "keepwise, 1 customer, concurrency 1" "$keepwise" one.json "$token" 1 1 0
    run kw32 "keepwise, 1 customer, concurrency 32" "$keepwise" one.json "$token" 2 32 0
    # exact TreeSHAP drivers (the default before per-leaf tables), on the explainer thread
    run ts32 "keepwise, treeshap drivers, concurrency 32" "$keepwise?drivers_method=treeshap" \
        one.json "$token" 2 32 0
    # drivers=0: the same decision without churn drivers (see the API guide)
    run nd32 "keepwise, 1 customer, drivers=0, concurrency 32" "$keepwise?drivers=0" one.json \
        "$token" 2 32 0
    # Paced: each of 12 connections waits 10 ms after every answer, about 1,000 requests/s in
    # all at a 1-2 ms latency (wrk has no open-loop rate; the achieved rate is printed).
    run kwp "keepwise, 1 customer, paced ~1000/s" "$keepwise" one.json "$token" 1 12 10
    run ml32 "mlflow models serve, 1 customer, conc. 32" "$mlflow" mlflow_one.json "" 2 32 0
    run kw100 "keepwise, 100 customers, concurrency 1" "$keepwise" batch100.json "$token" 1 1 0
    run ts100 "keepwise, 100 customers, treeshap, conc. 1" "$keepwise?drivers_method=treeshap" \
        batch100.json "$token" 1 1 0
    # throughput ratios against mlflow's best row; and server CPU per request (all threads of
    # keepwise, all processes of mlflow), which the machine's other load disturbs less
    awk '{r[$1] = $2; c[$1] = $3 / $4} END {
        m = (r["ml1"] > r["ml32"]) ? r["ml1"] : r["ml32"];
        mc = (c["ml1"] < c["ml32"]) ? c["ml1"] : c["ml32"];
        printf "    throughput vs mlflow models serve (%.0f/s): default drivers %.1fx, treeshap %.1fx, drivers=0 %.1fx\n",
            m, r["kw32"] / m, r["ts32"] / m, r["nd32"] / m;
        printf "    server CPU per request vs mlflow (%.2f ms): default drivers %.1fx less (%.3f ms), treeshap %.1fx (%.3f ms), drivers=0 %.1fx (%.3f ms)\n",
            mc, mc / c["kw32"], c["kw32"], mc / c["ts32"], c["ts32"], mc / c["nd32"], c["nd32"]
    }' "$work/rps.$round"
done
