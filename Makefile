# p4mesh — common tasks. Every target works on a fresh machine with Go 1.26.
GO ?= go

.PHONY: build test lint p4 bench mutate

build:
	$(GO) build ./...

# The README's test command; .ci/run runs it.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Compiles p4/vpc_peering.p4 with p4c (or the p4lang/p4c image) into
# p4/build/vpc_peering.json and p4/build/vpc_peering.p4info.txtpb.
p4:
	bash p4/compile.sh

# Benchmarks recorded in docs/benchmarks.md (test/bench's veth benchmark
# needs root and iperf3).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./p4rt/ ./dataplane/
	$(GO) test -run '^$$' -bench . -benchtime 20x ./test/bench/

# Mutation testing (github.com/go-gremlins/gremlins) over the packages whose
# tests guard isolation and correctness; results and surviving mutants are
# in docs/testing.md. Not in CI: hundreds of mutants, a test run each, is
# hours on 2 cores. One package: make mutate MUTATE_PKGS=./controller
GREMLINS ?= github.com/go-gremlins/gremlins/cmd/gremlins@v0.5.0
MUTATE_PKGS ?= ./controller ./ohc ./gnmi/server ./p4rt ./dataplane
mutate:
	@for p in $(MUTATE_PKGS); do \
		echo "== $$p"; \
		$(GO) run $(GREMLINS) unleash --workers 1 --timeout-coefficient 5 $$p || exit 1; \
	done
