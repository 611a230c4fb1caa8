#!/usr/bin/env bash
# Runs the README's first command (scripts/up.sh) on its own ports and
# Postgres, and checks that it reaches /readyz, a succeeded demo job, the
# published demo benchmark and its leaderboard.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log=$(mktemp)
(
  unset DATABASE_URL
  export NEURALIGN_PG_NAME=smoke NEURALIGN_PG_PORT=55434
  export NEURALIGN_HTTP_ADDR=127.0.0.1:18480 NEURALIGN_GRPC_ADDR=127.0.0.1:18481
  export NEURALIGN_ADMIN_KEY_FILE="$root/.neuralign/smoke_admin_key"
  exec setsid bash "$root/scripts/up.sh"
) >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM -- -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 900); do
  grep -q "^neuralign is serving" "$log" && break
  if ! kill -0 "$pid" 2>/dev/null || grep -q "demo failed" "$log"; then break; fi
  sleep 1
done
demo_benchmark() {
  key=$(sed -n 's/^  demo lab key: //p' "$log" | tail -1)
  [ -n "$key" ] && curl -fsS -H "Authorization: Bearer $key" \
    http://127.0.0.1:18480/v1/benchmarks/demo%2Fv1-simulated | grep -q '"public":true'
}
if grep -q "demo job succeeded" "$log" && grep -q "^demo leaderboard" "$log" && curl -fsS http://127.0.0.1:18480/readyz >/dev/null && demo_benchmark; then
  grep -E "demo: benchmark" "$log"
  grep -A 4 "demo job succeeded" "$log"
  grep -A 4 "^demo leaderboard" "$log"
  echo "smoke: 1 passed, 0 failed"
else
  echo "smoke: the up command did not reach a succeeded demo job; its log:"
  cat "$log"
  echo "smoke: 0 passed, 1 failed"
  exit 1
fi
