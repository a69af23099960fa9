#!/usr/bin/env bash
# The project's test command (`make test`; CI runs it too): installs the
# real PostgreSQL + PostgREST stack if it is missing, then checks formatting,
# vets, and runs every test under the race detector, integration tests
# included.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-stack.sh

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 8m ./...
# The fuzz targets, briefly: their seed corpora ran above as ordinary tests.
for target in FuzzRetryAfter FuzzErrorBody FuzzNew; do
  go test -run '^$' -fuzz "^${target}\$" -fuzztime 5s .
done
