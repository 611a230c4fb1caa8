#!/usr/bin/env bash
# Fuzzes the ingest readers (npy, npz, zip + manifest, long CSV, HDF5, NWB)
# for a fixed time per target, seeded with the ingest fixtures. Fails when a
# reader panics or hangs; findings land in target/fuzz-crashes/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$NEURALIGN_ROOT"
secs="${1:-60}"
shift || true
[ -f target/fixtures/ingest/cases.json ] || bash scripts/fixtures.sh
cargo build -q -p neuralign-fuzz
./target/debug/neuralign-fuzz target/fixtures/ingest target/fuzz-crashes "$secs" "$@"
