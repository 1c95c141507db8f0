#!/usr/bin/env bash
# A throwaway PostgreSQL for the Iceberg SQL-catalog tests.
#   .ci/postgres.sh [start]  install PostgreSQL from apt if missing, start a cluster on 127.0.0.1:$PORT in a
#                            temp dir, create database `streamsvc`, print its SQLAlchemy URL on stdout
#   .ci/postgres.sh stop     stop that cluster and remove its directory
#   .ci/postgres.sh install  only install the server packages (CI does this up front)
# PORT defaults to 55432 (STREAMSVC_PG_PORT). The Python driver is psycopg2 (`pyiceberg[sql-postgres]`).
set -euo pipefail
PORT="${STREAMSVC_PG_PORT:-55432}"
STATE="${TMPDIR:-/tmp}/streamsvc-pg-${PORT}.dir"
say() { echo "[postgres.sh] $*" >&2; }

pg_bin() {
  local d
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  return 1
}

as_owner() {  # initdb/postgres refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  if ! pg_bin >/dev/null; then
    say "installing PostgreSQL from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
  fi
  pg_bin >/dev/null
}

start() {
  install
  BIN="$(pg_bin)"
  if [ -f "$STATE" ] && [ -d "$(cat "$STATE")/data" ]; then stop; fi
  DIR="$(mktemp -d "${TMPDIR:-/tmp}/streamsvc-pg.XXXXXX")"
  echo "$DIR" >"$STATE"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$DIR"
  fi
  as_owner "$BIN/initdb" -D "$DIR/data" -U streamsvc --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
  as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U streamsvc streamsvc
  echo "postgresql+psycopg2://streamsvc@127.0.0.1:${PORT}/streamsvc"
}

stop() {
  [ -f "$STATE" ] || return 0
  DIR="$(cat "$STATE")"
  if BIN="$(pg_bin)" && [ -d "$DIR/data" ]; then
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
  fi
  rm -rf "$DIR" "$STATE"
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [install|start|stop]" >&2; exit 2 ;;
esac
