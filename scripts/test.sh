#!/usr/bin/env bash
# The project's test command (`make test`; CI runs it too): installs the
# real PostgreSQL + PostgREST stack if it is missing, then checks formatting,
# vets, and runs every test under the race detector, integration tests
# included, in the root module and in each nested module (NESTED).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-stack.sh

# Modules of their own, so that the root module does not depend on what
# they need (client_golang, OpenTelemetry).
NESTED="prometheus otel examples/categories"

unformatted=$(gofmt -l .) # the nested modules' folders included
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 8m ./...
for m in $NESTED; do
  echo "== $m"
  (cd "$m" && go vet ./... && go test -race -count=1 -timeout 8m ./...)
done
# The fuzz targets, briefly: their seed corpora ran above as ordinary tests.
for target in FuzzRetryAfter FuzzErrorBody FuzzNew; do
  go test -run '^$' -fuzz "^${target}\$" -fuzztime 5s .
done
