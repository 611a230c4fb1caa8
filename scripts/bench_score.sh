#!/usr/bin/env bash
# The end-to-end scoring benchmark of BENCHMARKS.md: neuralign (release
# server with in-process workers) against the Python pipeline labs use
# (PyTorch eager + scikit-learn + rsatoolbox), same data, same machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$NEURALIGN_ROOT/scripts/pg.sh"
cd "$NEURALIGN_ROOT"
bash scripts/fixtures.sh >/dev/null
out="$NEURALIGN_ROOT/target/bench/score"; mkdir -p "$out"
pg_start benchscore 55436
# Only the processes started here: `kill 0` would signal the caller's whole process group.
stop_started() {
  for p in ${server:-} ${worker:-}; do kill -TERM "$p" 2>/dev/null || true; done
  pg_stop benchscore
}
trap stop_started EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
cargo build -q --release -p neuralign-server
DATABASE_URL=postgres://neuralign@127.0.0.1:55436/neuralign NEURALIGN_ADMIN_KEY=nl_bench_admin \
  NEURALIGN_HTTP_ADDR=127.0.0.1:18680 NEURALIGN_GRPC_ADDR=127.0.0.1:18681 NEURALIGN_WORKER_CONCURRENCY=${BENCH_CONCURRENCY:-2} \
  env ${BENCH_SERVER_ENV:-} ${BENCH_SEPARATE_WORKER:+NEURALIGN_IN_PROCESS_WORKERS=false} RUST_LOG=${BENCH_LOG:-warn} "$NEURALIGN_ROOT/target/release/neuralign-server" &
server=$!
if [ -n "${BENCH_SEPARATE_WORKER:-}" ]; then
  cargo build -q --release -p neuralign-worker
  sleep 2
  DATABASE_URL=postgres://neuralign@127.0.0.1:55436/neuralign NEURALIGN_WORKER_CONCURRENCY=${BENCH_CONCURRENCY:-2} \
    env RUST_LOG=${BENCH_LOG:-warn} "$NEURALIGN_ROOT/target/release/neuralign-worker" &
  worker=$!
fi
for _ in $(seq 200); do curl -fs http://127.0.0.1:18680/readyz >/dev/null && break; sleep 0.1; done
python bench/score_pipeline.py "$out" http://127.0.0.1:18680 nl_bench_admin "$server"
