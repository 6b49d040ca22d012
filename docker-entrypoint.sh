#!/bin/sh
# Migrations run before the bot starts (set RUNCTL_SKIP_MIGRATE=1 when a separate init job runs them).
set -e
if [ "${RUNCTL_SKIP_MIGRATE:-0}" != "1" ] && [ "$1" = "runctl-bot" ] && [ "$2" = "serve" ]; then
  runctl-bot migrate
fi
exec "$@"
