#!/usr/bin/env bash
# Shared by the scripts: stops a private PostgreSQL cluster started under target/ (the tests'
# and benchmarks' own clusters; never a system one).
stop_private_pg() {
  local data=$1/data
  [ -f "$data/postmaster.pid" ] || return 0
  local bindir; bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true
  else "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true; fi
}
