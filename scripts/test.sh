#!/usr/bin/env bash
# The one command that runs the whole test suite: installs what is missing,
# starts a private Postgres for the tests (unless DATABASE_URL is set), runs
# every Rust test (real Postgres, libtorch, HTTP and gRPC clients), fuzzes
# the file readers for a fixed time, then runs the README's first command and
# checks it reaches a healthy server, a finished demo job and the demo
# benchmark.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$NEURALIGN_ROOT/scripts/pg.sh"
cd "$NEURALIGN_ROOT"

if [ -z "${DATABASE_URL:-}" ]; then
  pg_start test "${NEURALIGN_TEST_PG_PORT:-55433}" max_connections=400 fsync=off synchronous_commit=off full_page_writes=off
  trap 'pg_stop test' EXIT
fi

bash "$NEURALIGN_ROOT/scripts/fixtures.sh"
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads "${NEURALIGN_TEST_THREADS:-4}"
# The ingest readers under mutation fuzzing for a fixed time per target.
bash "$NEURALIGN_ROOT/scripts/fuzz.sh" "${NEURALIGN_FUZZ_SECONDS:-15}"

bash "$NEURALIGN_ROOT/scripts/smoke_up.sh"
