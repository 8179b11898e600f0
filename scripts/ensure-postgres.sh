#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers and prints its URL on stdout (logs go to stderr).
#   1. DATABASE_URL, when set and reachable;
#   2. else a server on 127.0.0.1:5432 with trust auth for user postgres;
#   3. else a throwaway cluster under target/kps-postgres (port 55432), started with the local
#      initdb/pg_ctl (installed from Debian's packages when missing). Idempotent.
# Usage: export DATABASE_URL="$(scripts/ensure-postgres.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "ensure-postgres: $*" >&2; }

if [ -n "${DATABASE_URL:-}" ]; then
  if psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    echo "$DATABASE_URL"; exit 0
  fi
  log "DATABASE_URL is set but does not answer; looking for another server"
fi

local_url="postgres://postgres@127.0.0.1:5432/postgres"
if psql "$local_url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "$local_url"; exit 0
fi

# Try the machine's own cluster first, if one is installed but stopped.
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>&1 || true
  done
  for _ in $(seq 1 20); do
    psql "$local_url" -Atqc 'select 1' >/dev/null 2>&1 && { echo "$local_url"; exit 0; }
    sleep 0.5
  done
fi

find_bin() {
  command -v "$1" 2>/dev/null && return
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}
initdb=$(find_bin initdb || true)
if [ -z "$initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    initdb=$(find_bin initdb)
  else
    log "no PostgreSQL server found and initdb is not installed"; exit 1
  fi
fi
pg_ctl="$(dirname "$initdb")/pg_ctl"
[ -x "$pg_ctl" ] || pg_ctl=$(find_bin pg_ctl)

port=55432
data="$PWD/target/kps-postgres"
url="postgres://postgres@127.0.0.1:$port/postgres"
if psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "$url"; exit 0
fi

# initdb refuses to run as root: run the throwaway cluster as the postgres (or nobody) user.
as_user=()
if [ "$(id -u)" = 0 ]; then
  user=postgres
  id "$user" >/dev/null 2>&1 || useradd --system --no-create-home "$user" >&2 || user=nobody
  as_user=(runuser -u "$user" --)
  mkdir -p "$data"
  chown "$user" "$data"
  chmod 700 "$data"
fi
if [ ! -s "$data/PG_VERSION" ]; then
  log "creating a throwaway cluster in $data"
  "${as_user[@]}" "$initdb" -D "$data" -U postgres --auth=trust -E UTF8 >&2
fi
log "starting the throwaway cluster on 127.0.0.1:$port"
"${as_user[@]}" "$pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
  -o "-p $port -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=200" start >&2 || {
  cat "$data/server.log" >&2 || true; exit 1; }
echo "$url"
