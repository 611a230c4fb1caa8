#!/usr/bin/env bash
# A private PostgreSQL cluster from the system's install, for one machine:
# `pg_start NAME PORT [extra postgres -c settings...]` initialises it on first
# use, starts it if it is not running and exports DATABASE_URL;
# `pg_stop NAME` stops it. initdb and postgres refuse to run as root, so as
# root the cluster belongs to the `postgres` system user and lives where
# that user can reach it.

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

pg_dir() {
  local name=$1
  if [ "$(id -u)" = 0 ]; then
    echo "/var/tmp/neuralign-$(echo "$NEURALIGN_ROOT" | sha1sum | head -c 10)/$name"
  else
    echo "$NEURALIGN_ROOT/.neuralign/$name"
  fi
}

pg_run() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local name=$1 port=$2; shift 2
  local bin dir; bin=$(pg_bin); dir=$(pg_dir "$name")
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown -R postgres "$(dirname "$dir")"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_run "$bin/initdb" -D "$dir/data" -U neuralign --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log"; return 1; }
  fi
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1"
  for o in "$@"; do opts="$opts -c $o"; done
  if ! pg_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    pg_run "$bin/pg_ctl" -D "$dir/data" -o "$opts" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
      || { tail -n 20 "$dir/postgres.log"; return 1; }
  fi
  "$bin/psql" -h 127.0.0.1 -p "$port" -U neuralign -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'neuralign'" | grep -q 1 \
    || "$bin/psql" -h 127.0.0.1 -p "$port" -U neuralign -d postgres -qc "CREATE DATABASE neuralign" >/dev/null
  export DATABASE_URL="postgres://neuralign@127.0.0.1:$port/neuralign"
  echo "postgres: private cluster '$name' on 127.0.0.1:$port (data in $dir/data)"
}

pg_stop() {
  local dir; dir=$(pg_dir "$1")
  [ -f "$dir/data/PG_VERSION" ] && pg_run "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}
