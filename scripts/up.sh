#!/usr/bin/env bash
# The one command that brings neuralign up on this machine: installs what is
# missing, builds, starts a private Postgres (unless DATABASE_URL is set),
# starts the server with in-process workers, runs the demo job and keeps
# serving until Ctrl-C.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$NEURALIGN_ROOT/scripts/pg.sh"
cd "$NEURALIGN_ROOT"

own_pg=0
if [ -z "${DATABASE_URL:-}" ]; then
  pg_start "${NEURALIGN_PG_NAME:-up}" "${NEURALIGN_PG_PORT:-55432}"
  own_pg=1
fi

# The admin key is created once and kept beside the data, so the demo and
# the operator can use it on every start.
keyfile="${NEURALIGN_ADMIN_KEY_FILE:-$NEURALIGN_ROOT/.neuralign/admin_key}"
if [ -z "${NEURALIGN_ADMIN_KEY:-}" ]; then
  mkdir -p "$(dirname "$keyfile")"
  [ -s "$keyfile" ] || { (umask 077; python3 -c 'import secrets; print("nl_" + secrets.token_hex(32))' >"$keyfile"); \
    echo "admin api key (stored in $keyfile): $(cat "$keyfile")"; }
  NEURALIGN_ADMIN_KEY=$(cat "$keyfile")
  export NEURALIGN_ADMIN_KEY
fi

cargo build -q -p neuralign-server -p neuralign-worker
echo "admin api key file: $keyfile"
server="$NEURALIGN_ROOT/target/debug/neuralign-server"
if [ "$own_pg" = 1 ]; then
  trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pg_stop "${NEURALIGN_PG_NAME:-up}"' EXIT INT TERM
fi
"$server" --demo "$@" &
pid=$!
wait "$pid"
