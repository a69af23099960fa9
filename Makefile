# The README's two commands: `make test` and `make demo`.
.PHONY: test demo bench setup check

# Install PostgreSQL 15 and PostgREST 12 if missing, then vet and run every
# test, the integration tests against the real stack included.
test:
	./scripts/test.sh

# Set up the stack if needed and print the before/after load-test table.
demo: setup
	go run ./examples/loadtest

# The pool benchmarks, side by side with puddle.
bench:
	go test -run '^$$' -bench Pool -benchmem -count 10 .

setup:
	./scripts/setup-stack.sh

# Formatting and vet only, in every module.
check:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	go vet ./...
	for m in prometheus otel examples/categories; do (cd $$m && go vet ./...) || exit 1; done
