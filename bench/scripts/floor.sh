#!/usr/bin/env bash
# The floor beside the gateway (BENCHMARKS.md, "The machine is not the ceiling").
#
#   bench/scripts/floor.sh [RATES] [SECONDS]      e.g. bench/scripts/floor.sh 3000,8000 10
#
# Environment: ROUNDS (3); UP=nginx|standin (the upstream on 127.0.0.1:9100);
# GEN=oha|bench (oha at constant rates, or gpubridge-bench with precise pacing).
# Targets, in turn each round: the upstream direct, gpubridge-floor (:8082),
# nginx as a reverse proxy (:8081), the daemon's /inference and
# /v1/chat/completions (:8080; accounts off, no request limits,
# sync_writes = true). Needs `cargo build --release`, nginx, and oha on PATH
# for GEN=oha. Loopback only; every process it starts is stopped at the end.
set -euo pipefail
RATES=${1:-3000,8000}; SECS=${2:-10}; ROUNDS=${ROUNDS:-3}; UP=${UP:-nginx}; GEN=${GEN:-oha}
R=${R:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
[ -x "$R/gpubridge" ] || R=$(dirname "$R")/x86_64-unknown-linux-gnu/release
d=$(mktemp -d)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  for c in "$d"/*.conf; do [ -e "$c" ] && nginx -c "$c" -s stop 2>/dev/null || true; done
  while pgrep -f "nginx: master process nginx -c $d" >/dev/null; do sleep 0.1; done
  rm -rf "$d"
}
trap cleanup EXIT
COMPLETION='{"id":"chatcmpl-fixed","object":"chat.completion","created":1764000000,"model":"llama-3.3-70b-versatile","choices":[{"index":0,"message":{"role":"assistant","content":"The changelog adds retries, fixes two leaks and speeds up routing."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":14,"total_tokens":26}}'
common="pid $d/\$NAME.pid; error_log $d/\$NAME.log warn; events { worker_connections 4096; }"
cat > "$d/upstream.conf" <<CONF
worker_processes 1; ${common//\$NAME/upstream}
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:9100 backlog=4096;
    location / { default_type application/json; return 200 '$COMPLETION'; } } }
CONF
cat > "$d/proxy.conf" <<CONF
worker_processes 2; ${common//\$NAME/proxy}
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  upstream up { server 127.0.0.1:9100; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:8081 backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
if [ "$UP" = nginx ]; then
  nginx -c "$d/upstream.conf"
else
  rm "$d/upstream.conf"
  "$R/gpubridge-standin" --addr 127.0.0.1:9100 --key standin-key >/dev/null 2>&1 & PIDS+=($!)
fi
nginx -c "$d/proxy.conf"
"$R/gpubridge-floor" --addr 127.0.0.1:8082 --upstream http://127.0.0.1:9100 >/dev/null & PIDS+=($!)
printf '[scheduler]\nsync_writes = true\n[limits]\nper_ip = { per_second = 0, burst = 1 }\nper_key = { per_second = 0, burst = 1 }\nmax_concurrent_jobs = 0\n' > "$d/daemon.toml"
GPUBRIDGE_ACCOUNTS_ENABLED=false GROQ_API_KEY=standin-key GPUBRIDGE_GROQ_BASE_URL=http://127.0.0.1:9100/v1 GPUBRIDGE_LOG=warn \
  "$R/gpubridge" serve --http-addr 127.0.0.1:8080 --data-dir "$d/data" --config "$d/daemon.toml" > "$d/daemon.out" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do grep -q listening "$d/daemon.out" && break; sleep 0.2; done
MODEL=meta-llama/Llama-3.3-70B-Instruct
CHAT='{"model":"llama-3.3-70b-versatile","messages":[{"role":"user","content":"Summarize this changelog"}],"max_tokens":64}'
CHATM='{"model":"'$MODEL'","messages":[{"role":"user","content":"Summarize this changelog"}],"max_tokens":64}'
INF='{"model":"'$MODEL'","prompt":"Summarize this changelog","max_tokens":64}'
oha_run() { # name url body rate
  oha --no-tui --output-format json -z "${SECS}s" -q "$4" -c 50 -m POST -H 'content-type: application/json' \
    -H 'authorization: Bearer standin-key' -d "$3" "$2" > "$d/oha.json"
  python3 - "$1" "$4" "$d/oha.json" <<'PY'
import json, sys
name, rate, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
j = json.load(open(path)); p = j['latencyPercentiles']; s = j['summary']
print('%-11s %5d req/s ok %.4f p50 %5.0f p99 %5.0f p99.9 %5.0f µs' % (
    name, rate, s['successRate'], p['p50'] * 1e6, p['p99'] * 1e6, p['p99.9'] * 1e6))
PY
}
if [ "$GEN" = oha ]; then
  for rate in ${RATES//,/ }; do
    for _ in $(seq "$ROUNDS"); do
      oha_run direct http://127.0.0.1:9100/v1/chat/completions "$CHAT" "$rate"
      oha_run floor http://127.0.0.1:8082/v1/chat/completions "$CHAT" "$rate"
      oha_run nginx-proxy http://127.0.0.1:8081/v1/chat/completions "$CHAT" "$rate"
      oha_run inference http://127.0.0.1:8080/inference "$INF" "$rate"
      oha_run v1-chat http://127.0.0.1:8080/v1/chat/completions "$CHATM" "$rate"
    done
  done
else
  "$R/gpubridge-bench" --bearer standin-key --seconds "$SECS" --rates "$RATES" --rounds "$ROUNDS" \
    --target direct=openai-chat@http://127.0.0.1:9100/v1/chat/completions \
    --target floor=openai-chat@http://127.0.0.1:8082/v1/chat/completions \
    --target nginx-proxy=openai-chat@http://127.0.0.1:8081/v1/chat/completions \
    --target inference=inference@http://127.0.0.1:8080/inference \
    --target v1-chat=openai-chat@http://127.0.0.1:8080/v1/chat/completions
fi
