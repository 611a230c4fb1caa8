#!/usr/bin/env bash
# Benchmarks of the job service, recorded in BENCHMARKS.md:
#   queue   no-op job throughput (1, 2, 4 worker slots), submit→start latency
#   poll    GET /v1/jobs/{id} requests/s under wrk from a second process
#   blob    streaming upload and download of a large .npy (default 2 GiB)
#           with the server's peak resident memory before and after
#   graphile  the same queue workload on graphile-worker 0.16.6 (npm), the peer
#   ingest  a 1 GiB recording (.npy, 8 × 1024 × 32768 float32) through
#           POST /v1/recordings (spool, validate, normalize, reliability,
#           store) with the server's peak memory, against a plain binary
#           COPY of the same bytes into Postgres in the same 4 MiB rows
# Usage: scripts/bench.sh [queue|poll|blob|graphile|ingest ...]   (default: all)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$NEURALIGN_ROOT/scripts/pg.sh"
cd "$NEURALIGN_ROOT"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
parts=("${@:-queue poll blob graphile ingest}"); parts=(${parts[*]})
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

if has ingest; then
  rec="$out/recording.npy"; stim="$out/recording_stimuli.npy"
  python3 - "$rec" "$stim" <<'PY'
import sys
import numpy as np
rec, stim = sys.argv[1:]
r, s, n = 8, 1024, 32768
rng = np.random.default_rng(0)
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (r, s, n)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
signal = rng.standard_normal((s, n), dtype=np.float32)
with open(rec, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    for _ in range(r):
        (signal + rng.standard_normal((s, n), dtype=np.float32)).tofile(f)
np.save(stim, rng.standard_normal((s, 4)))
PY
  mib=$(( $(stat -c %s "$rec") >> 20 ))
  start_server --in-process-workers=false
  key=$(lab_key)
  set_id=$(curl -fsS -T "$stim" -XPOST "http://127.0.0.1:18580/v1/stimulus-sets?name=bench" -H "authorization: Bearer $key" \
    -H 'content-type: application/octet-stream' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  before=$(rss "$server" VmHWM)
  t0=$(date +%s.%N)
  curl -fsS -T "$rec" -XPOST "http://127.0.0.1:18580/v1/recordings?stimulus_set=$set_id&name=big" \
    -H "authorization: Bearer $key" -H 'content-type: application/octet-stream' > "$out/recording.json"
  t1=$(date +%s.%N)
  after=$(rss "$server" VmHWM)
  kill -TERM "$server"; wait "$server" || true
  # The peer: the same bytes, COPY ... FROM STDIN (FORMAT binary) in 4 MiB rows.
  psql_=("$(pg_bin)/psql" -h 127.0.0.1 -p 55435 -U neuralign -d postgres -q)
  "${psql_[@]}" -c "DROP TABLE IF EXISTS copy_peer" -c "CREATE TABLE copy_peer (seq int, data bytea)" \
    -c "ALTER TABLE copy_peer ALTER COLUMN data SET STORAGE EXTERNAL"
  c0=$(date +%s.%N)
  python3 - "$rec" <<'PY' | "${psql_[@]}" -c "COPY copy_peer (seq, data) FROM STDIN WITH (FORMAT binary)"
import struct, sys
out = sys.stdout.buffer
out.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
with open(sys.argv[1], "rb") as f:
    seq = 0
    while chunk := f.read(4 << 20):
        out.write(struct.pack("!hii", 2, 4, seq) + struct.pack("!i", len(chunk)) + chunk)
        seq += 1
out.write(struct.pack("!h", -1))
PY
  c1=$(date +%s.%N)
  "${psql_[@]}" -c "DROP TABLE copy_peer"
  python3 - "$mib" "$t0" "$t1" "$c0" "$c1" "$before" "$after" "$out/recording.json" <<'PY' | tee "$out/ingest.txt"
import json, sys
mib, t0, t1, c0, c1, b, a, meta = sys.argv[1:]
mib, t0, t1, c0, c1 = int(mib), float(t0), float(t1), float(c0), float(c1)
rec = json.load(open(meta))
print(f"| {mib} MiB recording {rec['shape']} float32 | POST /v1/recordings {mib/(t1-t0):.0f} MiB/s ({t1-t0:.1f} s) "
      f"| plain binary COPY {mib/(c1-c0):.0f} MiB/s ({c1-c0:.1f} s) | ratio {(t1-t0)/(c1-c0):.2f}x "
      f"| server peak RSS {b} MiB before, {a} MiB after | median reliability {rec['reliability']['median']:.3f} |")
PY
  rm -f "$rec" "$stim"
fi
