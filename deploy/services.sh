#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis on 127.0.0.1, from Debian's packages, for trying the
# distributed deployment (and for `make e2e-distributed`). Not for production data.
#
#   deploy/services.sh start STATE_DIR   install if missing, start both on free ports,
#                                        write STATE_DIR/env (source it: DAGSTER_PG_*,
#                                        DAGSTER_CELERY_BROKER_URL, DAGSTER_CELERY_BACKEND_URL)
#   deploy/services.sh stop STATE_DIR    stop both and delete their data
#
# PostgreSQL refuses to run as root: as root, its data lives in a fresh /tmp folder owned by
# the `postgres` user (created by Debian's package). The password is random, in STATE_DIR/env
# (mode 600) only.
set -Eeuo pipefail

usage() { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
state=$(mkdir -p "$2" && cd "$2" && pwd)

as_pg() {  # run a PostgreSQL tool as the user that owns the cluster
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local initdb
  initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $initdb ]] && dirname "$initdb"
}

install_missing() {
  local wanted=()
  [[ -n $(pg_bin || true) ]] || wanted+=(postgresql)
  command -v redis-server >/dev/null || wanted+=(redis-server)
  [[ ${#wanted[@]} -eq 0 ]] && return
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing ${wanted[*]}: run 'sudo apt-get install -y ${wanted[*]}' and try again" >&2
    exit 1
  fi
  echo "installing Debian's ${wanted[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
  # Debian's package may start its own default cluster/server; ours run separately, on
  # other ports, so theirs are left as the package set them up.
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  if [[ -f $state/env ]]; then
    echo "$state/env exists: services already started? run '$0 stop $state' first" >&2
    exit 1
  fi
  install_missing
  local bin pg_port redis_port password pg_dir
  bin=$(pg_bin)
  pg_port=$(free_port)
  redis_port=$(free_port)
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  pg_dir=$(mktemp -d /tmp/export-assets-pg.XXXXXX)
  chmod 755 "$pg_dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$pg_dir"
  umask 077
  # The password goes to initdb through a file, never on a command line.
  printf '%s\n' "$password" >"$pg_dir/pwfile"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$pg_dir/pwfile"
  # From here on, a failing step stops and deletes whatever this start had started.
  trap 'echo "start failed: stopping what was started" >&2; stop' ERR
  cat >"$state/env" <<EOF
export DAGSTER_PG_HOST=127.0.0.1
export DAGSTER_PG_PORT=$pg_port
export DAGSTER_PG_DB=dagster
export DAGSTER_PG_USERNAME=dagster
export DAGSTER_PG_PASSWORD=$password
export DAGSTER_CELERY_BROKER_URL=redis://127.0.0.1:$redis_port/0
export DAGSTER_CELERY_BACKEND_URL=redis://127.0.0.1:$redis_port/1
export EXPORT_SERVICES_PG_DIR=$pg_dir
export EXPORT_SERVICES_REDIS_PORT=$redis_port
EOF
  as_pg "$bin/initdb" -D "$pg_dir/data" -U dagster --pwfile="$pg_dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 >"$pg_dir/initdb.log"
  rm -f "$pg_dir/pwfile"
  as_pg "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir" start >/dev/null
  as_pg "$bin/createdb" -h "$pg_dir" -p "$pg_port" -U dagster dagster

  mkdir -p "$state/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$state/redis" \
    --daemonize yes --pidfile "$state/redis/redis.pid" --logfile "$state/redis/redis.log" \
    --save "" --appendonly no
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null
  echo "PostgreSQL on 127.0.0.1:$pg_port (db dagster), Redis on 127.0.0.1:$redis_port;" \
    "environment in $state/env" >&2
}

stop() {
  if [[ ! -f $state/env ]]; then
    echo "nothing to stop: no $state/env" >&2
    return
  fi
  # shellcheck disable=SC1091
  source "$state/env"
  local bin pid
  bin=$(pg_bin)
  if [[ -d $EXPORT_SERVICES_PG_DIR/data ]]; then
    as_pg "$bin/pg_ctl" -D "$EXPORT_SERVICES_PG_DIR/data" -m fast -w -t 60 stop >/dev/null \
      || true
  fi
  if [[ -f $state/redis/redis.pid ]]; then
    pid=$(cat "$state/redis/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -rf "$EXPORT_SERVICES_PG_DIR" "$state/redis" "$state/env"
  echo "stopped PostgreSQL and Redis; their data is deleted" >&2
}

case $action in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
