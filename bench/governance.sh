#!/usr/bin/env bash
# Gateway CPU per request with and without governance (limits on the caller's key).
# Three keys: the master key, a key from the config file, and a key issued by the
# admin API (from the database snapshot), the last two with the same four limits.
#
#   bash bench/governance.sh [memory|redis://127.0.0.1:6379/5] [seconds]
#
# The gateway runs pinned to CPU 0, the mock upstream and wrk to CPU 1 (as bench/run.py
# does); CPU time is read from /proc/<pid>/stat before and after each wrk run. Two keys
# are measured on the same gateway: the master key (no limits: the admit stage returns
# at once) and a key with rpm, tpm and a daily budget plus its org's rpm (4 limits
# reserved and settled on every call, cost priced from the shipped catalogue).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${1:-memory}
SECONDS_PER_RUN=${2:-8}
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); GW_PORT=$(free_port)
WORK=$(mktemp -d)
trap 'kill $GW $MOCK 2>/dev/null || true; rm -rf "$WORK"' EXIT
taskset -c 1 .venv/bin/python bench/mock_upstream.py --port "$MOCK_PORT" >/dev/null 2>&1 &
MOCK=$!
cat > "$WORK/gw.yaml" <<YAML
server: {port: $GW_PORT, access_log: true, data_dir: $WORK}
governance:
  state: $STATE
  orgs: [{name: acme, limits: {rpm: 100000000}}]
auth:
  keys:
    - {name: app, key: sk-bench-app-key-0000000, org: acme,
       limits: {rpm: 100000000, tpm: 1000000000000, budget_usd_day: 100000000}}
models:
  - name: gpt-4o-mini
    deployments:
      - {provider: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", max_concurrency: 1024}
YAML
SLUICEGATE_MASTER_KEY=sk-bench-master-key-000 taskset -c 0 .venv/bin/sluicegate serve \
  --config "$WORK/gw.yaml" >/dev/null 2>&1 &
GW=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GW_PORT/health" >/dev/null && break; sleep 0.1; done
ADMIN=(-H "Authorization: Bearer sk-bench-master-key-000" -H "content-type: application/json")
curl -sf "${ADMIN[@]}" "http://127.0.0.1:$GW_PORT/admin/orgs" \
  -d '{"name": "dbco", "limits": {"rpm": 100000000}}' >/dev/null
DB_KEY=$(curl -sf "${ADMIN[@]}" "http://127.0.0.1:$GW_PORT/admin/keys" \
  -d '{"name": "db-app", "org": "dbco", "limits": {"rpm": 100000000, "tpm": 1000000000000, "budget_usd_day": 100000000}}' \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["key"])')
echo "| state | key | requests | gateway CPU µs/request |"
echo "|---|---|---|---|"
for KEY in sk-bench-master-key-000 sk-bench-app-key-0000000 "$DB_KEY"; do
  cat > "$WORK/chat.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello, how are you today? Tell me about sluice gates."}],"max_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
  taskset -c 1 wrk -t1 -c16 -d2s -s "$WORK/chat.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" >/dev/null
  T0=$(awk '{print $14+$15}' "/proc/$GW/stat")
  OUT=$(taskset -c 1 wrk -t1 -c16 -d"${SECONDS_PER_RUN}s" -s "$WORK/chat.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions")
  T1=$(awk '{print $14+$15}' "/proc/$GW/stat")
  N=$(echo "$OUT" | awk '/requests in/ {print $1}')
  if echo "$OUT" | grep -q "Non-2xx"; then echo "error: refusals during the run" >&2; exit 1; fi
  TICK=$(getconf CLK_TCK)
  case "$KEY" in
    sk-bench-master-key-000) LABEL="master (no limits)" ;;
    sk-bench-app-key-0000000) LABEL="config key (4 limits)" ;;
    *) LABEL="database key (4 limits)" ;;
  esac
  echo "| $STATE | $LABEL | $N | $(( (T1 - T0) * 1000000 / TICK / N )) |"
done
