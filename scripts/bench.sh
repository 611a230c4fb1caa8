#!/usr/bin/env bash
# Benchmarks of the job service, recorded in BENCHMARKS.md:
#   queue   no-op job throughput (1, 2, 4 worker slots), submit→start latency
#   poll    GET /v1/jobs/{id} requests/s under wrk from a second process
#   blob    streaming upload and download of a large .npy (default 2 GiB)
#           with the server's peak resident memory before and after
#   graphile  the same queue workload on graphile-worker 0.16.6 (npm), the peer
# Usage: scripts/bench.sh [queue|poll|blob|graphile ...]   (default: all)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$NEURALIGN_ROOT/scripts/pg.sh"
cd "$NEURALIGN_ROOT"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
parts=("${@:-queue poll blob graphile}"); parts=(${parts[*]})
out="$NEURALIGN_ROOT/target/bench"; mkdir -p "$out"
pg_start bench 55435
trap 'pg_stop bench' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
cargo build -q --release -p neuralign-server -p neuralign-worker

has() { [[ " ${parts[*]} " == *" $1 "* ]]; }

if has queue; then
  cargo bench -q -p neuralign-server --bench queue | tee "$out/queue.txt"
fi

if has graphile; then
  # graphile-worker 0.16.6 is the newest that runs on Debian's Node 20.
  gdir="$out/graphile"; mkdir -p "$gdir"
  [ -d "$gdir/node_modules/graphile-worker" ] || (cd "$gdir" && npm install --silent graphile-worker@0.16.6)
  "$(pg_bin)/psql" -h 127.0.0.1 -p 55435 -U neuralign -d postgres -qc "DROP DATABASE IF EXISTS graphile" -qc "CREATE DATABASE graphile" >/dev/null
  GRAPHILE_DIR="$gdir" DATABASE_URL="postgres://neuralign@127.0.0.1:55435/graphile" node bench/graphile_peer.cjs | tee "$out/graphile.txt"
fi

start_server() {
  NEURALIGN_ADMIN_KEY=nl_bench_admin NEURALIGN_HTTP_ADDR=127.0.0.1:18580 NEURALIGN_GRPC_ADDR=127.0.0.1:18581 \
    NEURALIGN_MAX_UPLOAD_BYTES=$((8 << 30)) RUST_LOG=warn "$NEURALIGN_ROOT/target/release/neuralign-server" "$@" &
  server=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:18580/readyz >/dev/null && return; sleep 0.1; done
  echo "server did not start"; exit 1
}
lab_key() {
  curl -fsS -XPOST http://127.0.0.1:18580/v1/labs -H 'authorization: Bearer nl_bench_admin' \
    -H 'content-type: application/json' -d "{\"name\": \"bench-$RANDOM$RANDOM\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])'
}
rss() { awk -v k="$2" '$1 == k":" {print int($2/1024)}' "/proc/$1/status"; }

if has poll; then
  start_server
  key=$(lab_key)
  job=$(curl -fsS -XPOST http://127.0.0.1:18580/v1/jobs -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"spec": {"kind": "noop"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  wrk -t2 -c32 -d10s -H "Authorization: Bearer $key" "http://127.0.0.1:18580/v1/jobs/$job" | tee "$out/poll.txt"
  kill -TERM "$server"; wait "$server" || true
fi

if has blob; then
  size_mib=${BENCH_BLOB_MIB:-2048}
  file="$out/blob.npy"
  python3 - "$file" "$size_mib" <<'PY'
import sys
path, mib = sys.argv[1], int(sys.argv[2])
n = mib * (1 << 20) // 8
header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d,), }" % n
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    f.truncate(f.tell() + n * 8)
PY
  start_server --in-process-workers=false
  key=$(lab_key)
  before=$(rss "$server" VmHWM)
  t0=$(date +%s.%N)
  id=$(curl -fsS -T "$file" -XPOST "http://127.0.0.1:18580/v1/arrays?name=big" -H "authorization: Bearer $key" \
    -H 'content-type: application/octet-stream' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  t1=$(date +%s.%N)
  after_up=$(rss "$server" VmHWM)
  curl -fsS "http://127.0.0.1:18580/v1/arrays/$id/data" -H "authorization: Bearer $key" -o /dev/null
  t2=$(date +%s.%N)
  after_down=$(rss "$server" VmHWM)
  python3 - "$size_mib" "$t0" "$t1" "$t2" "$before" "$after_up" "$after_down" <<'PY' | tee "$out/blob.txt"
import sys
mib, t0, t1, t2, b, u, d = sys.argv[1:]
mib, t0, t1, t2 = int(mib), float(t0), float(t1), float(t2)
print(f"| {mib} MiB .npy | upload {mib/(t1-t0):.0f} MiB/s ({t1-t0:.1f} s) | download {mib/(t2-t1):.0f} MiB/s ({t2-t1:.1f} s) "
      f"| server peak RSS: {b} MiB at start, {u} MiB after upload, {d} MiB after download |")
PY
  kill -TERM "$server"; wait "$server" || true
  rm -f "$file"
fi
