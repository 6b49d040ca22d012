#!/usr/bin/env bash
# The whole test suite as CI runs it: lint, types, then pytest with a real PostgreSQL when one can be started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff check";         $BIN/ruff check .
echo "== ruff format --check"; $BIN/ruff format --check .
echo "== mypy";               $BIN/mypy bot providers storage

pg_dir=""
cleanup() {
  if [[ -n "$pg_dir" && -f "$pg_dir/data/postmaster.pid" ]]; then
    $pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [[ -n "$pg_dir" ]] && rm -rf "$pg_dir"
}
trap cleanup EXIT

if [[ -z "${RUNCTL_TEST_POSTGRES_URL:-}" ]]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$pg_bin" && -x "$pg_bin/pg_ctl" ]]; then
    pg_dir=$(mktemp -d /tmp/runctl-pg.XXXXXX)
    pg_run=""
    if [[ $(id -u) -eq 0 ]]; then
      # PostgreSQL refuses to run as root: use its own unprivileged account.
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
      chown postgres "$pg_dir"
      pg_run="runuser -u postgres --"
    fi
    port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    $pg_run "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
    $pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
      -o "-h 127.0.0.1 -p $port -k $pg_dir -c fsync=off -c full_page_writes=off" start >/dev/null
    export RUNCTL_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    echo "== PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
  else
    echo "== PostgreSQL not installed: tests marked 'postgres' will be skipped (install the 'postgresql' package)"
  fi
fi

echo "== pytest"
set +e
$BIN/pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $status
