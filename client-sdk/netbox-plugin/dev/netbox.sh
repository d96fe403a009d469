#!/usr/bin/env bash
# A private NetBox for the plugin: installs what it needs (Debian's redis-server and
# PostgreSQL, NetBox 4.7 from PyPI with the SDK and this plugin in .tools/netbox-venv), starts
# PostgreSQL and Redis on loopback ports in a temporary directory, migrates a fresh database,
# runs the given command with NetBox configured, then stops them.
#
#   client-sdk/netbox-plugin/dev/netbox.sh <command> [args...]
#
# The tests' database is made from that one (TEST TEMPLATE), so it needs no migrating either.
# The command sees NETBOX_ROOT (conf/configuration.py is dev/configuration.py), the venv's bin
# first on PATH (so `netbox` is NetBox's command) and NETBOX_PG_PORT, NETBOX_REDIS_PORT.
# PLUGINS_CONFIG takes FABRICSYNC_ADDR and FABRICSYNC_TOKEN from the environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
[ $# -gt 0 ] || { echo "usage: $0 <command> [args...]" >&2; exit 2; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# NetBox's psycopg[c] is built against libpq.
command -v pg_config >/dev/null || need+=(libpq-dev)
command -v gcc >/dev/null || need+=(gcc)
[ -n "${NETBOX_BROWSER:-}" ] && { command -v chromium >/dev/null || need+=(chromium); command -v chromedriver >/dev/null || need+=(chromium-driver); }
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

# The venv (NetBox needs Python >= 3.12), installed into only when its requirements change.
venv=$root/.tools/netbox-venv
stamp=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if [ ! -x "$venv/bin/python" ]; then
  python=$(ls -d "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12.*/bin/python 2>/dev/null | tail -1)
  [ -n "$python" ] || python=$(command -v python3.12 || command -v python3)
  "$python" -m venv "$venv"
fi
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$stamp" >"$venv/.stamp"
fi
# This checkout's SDK and plugin on the venv's path (as an editable install would put them,
# without a build each time).
printf '%s\n' "$root/client-sdk/python/src" "$root/client-sdk/python/gen" "$root/client-sdk/netbox-plugin" \
  >"$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fabricsync-checkout.pth"

dir=$(mktemp -d /tmp/netbox-plugin.XXXXXX)
chmod 755 "$dir"
redis_pid=
cleanup() {
  [ -f "$dir/pg/postmaster.pid" ] && runuser_pg "$pgbin/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
runuser_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL: a private cluster (as the postgres user when root), trust on loopback only.
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
mkdir -p "$dir/pg" && [ "$(id -u)" != 0 ] || chown postgres "$dir/pg"
runuser_pg "$pgbin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 >/dev/null
export NETBOX_PG_PORT=$(free_port)
runuser_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg/log" -w -o "-h 127.0.0.1 -p $NETBOX_PG_PORT -k $dir/pg -c fsync=off" start >/dev/null
"$pgbin/createdb" -h 127.0.0.1 -p "$NETBOX_PG_PORT" -U postgres netbox

export NETBOX_REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$NETBOX_REDIS_PORT" --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!

mkdir -p "$dir/root/conf"
cp "$here/configuration.py" "$dir/root/conf/configuration.py"
export NETBOX_ROOT=$dir/root
export NETBOX_SECRET_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export PATH=$venv/bin:$PATH
# NetBox's migrations take minutes: a migrated database is dumped once per NetBox version and
# plugin migrations, and later runs load the dump (seconds).
dump=$root/.tools/netbox-db/$( (cat "$here/requirements.txt" "$here"/../netbox_fabricsync/migrations/*.py) | sha256sum | cut -c1-16).sql
if [ -f "$dump" ]; then
  psql -q -h 127.0.0.1 -p "$NETBOX_PG_PORT" -U postgres -d netbox -v ON_ERROR_STOP=1 -f "$dump" >/dev/null
else
  netbox migrate --no-input -v 0
  mkdir -p "$(dirname "$dump")"
  pg_dump -h 127.0.0.1 -p "$NETBOX_PG_PORT" -U postgres netbox >"$dump.tmp" && mv "$dump.tmp" "$dump"
fi
status=0
"$@" || status=$?
exit $status
