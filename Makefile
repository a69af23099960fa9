# The README's commands: `make test`, `make demo`, `make adaptive`, `make example`, `make bench` and `make bench-ab`.
.PHONY: test demo adaptive example bench bench-ab setup check

# Install PostgreSQL 15 and PostgREST 12 if missing, then vet and run every
# test, the integration tests against the real stack included.
test:
	./scripts/test.sh

# Set up the stack if needed and print the before/after load-test table.
demo: setup
	go run ./internal/loadtest

# Set up the stack if needed and compare AdaptiveLimit with fixed sizes on a
# PostgREST with a db-pool of 4 (a sweep, then three modes; about 75 s).
adaptive: setup
	go run ./internal/loadtest -adaptive

# Run examples/categories against the local stack and print curl commands to
# try it; Ctrl-C stops the example and the stack. The launcher is built and
# then run by make itself (not through `go run`, which ignores SIGINT but
# dies of SIGTERM without passing it on), so that both signals reach it.
example: setup
	go build -o .tools/bin/example ./internal/cmd/example
	.tools/bin/example

# The pool benchmarks, side by side with puddle.
bench:
	go test -run '^$$' -bench 'Pool|Clock' -benchmem -count 10 .

# The README's benchmark table: each case in a process of its own, against
# BASE (default: the commit before the checkout binding), alternating.
bench-ab:
	scripts/bench-ab.sh $(or $(BASE),ed775b3) $(or $(ROUNDS),20)

setup:
	./scripts/setup-stack.sh

# Formatting and vet only, in every module.
check:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	go vet ./...
	for m in prometheus otel examples/categories; do (cd $$m && go vet ./...) || exit 1; done
