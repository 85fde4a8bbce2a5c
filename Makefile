# p4mesh — common tasks. Every target works on a fresh machine with Go 1.26.
GO ?= go

.PHONY: build test lint p4 bench bench-scale mutate mininet

build:
	$(GO) build ./...

# The README's test command; .ci/run runs it.
test:
	$(GO) vet ./...
	# bgp/ runs its GoBGP routers and speakers in one process, and GoBGP
	# v3.37 writes package variables in every StartBgp that other servers
	# read (same values; see fenceAll in bgp/speaker.go): the race detector
	# flags it in one run of several, so bgp/ runs without -race, as does
	# TestBGPFRR (skipped under -race).
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/p4mesh/bgp$$')
	$(GO) test -count=1 ./bgp/
	$(GO) test -count=1 -run '^TestBGPFRR$$' ./test/e2e/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Compiles p4/v1model, p4/tna and p4/pna where their compilers are
# installed (p4c-bm2-ss or the p4lang/p4c image; bf-p4c, else p4test with
# P4C_TNA_INCLUDE; p4c-dpdk), diffs each P4Info against the committed one,
# and names what it skipped. One architecture: make p4 P4_ARCHS=pna.
# P4_CHECK=1 fails on a changed P4Info.
P4_ARCHS ?=
p4:
	bash p4/compile.sh $(P4_ARCHS)

# The demo's topology on Mininet (deploy/mininet/README.md): root and
# Debian's mininet package. TARGET=bmv2 insists on BMv2 (and says how to get
# it), TARGET=p4mesh on p4mesh-switch; auto takes BMv2 when installed.
# MININET_ARGS=--test pings the expectations headless instead of the CLI.
TARGET ?= auto
MININET_ARGS ?=
MININET_BIN ?= $(CURDIR)/.mininet/bin
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
mininet:
	$(GO) build -o $(MININET_BIN)/ ./cmd/p4mesh-controller ./cmd/p4mesh-switch ./cmd/p4mesh-ohc ./cmd/p4meshctl
	$(SUDO) /usr/bin/python3 deploy/mininet/p4mesh_mininet.py --bin $(MININET_BIN) --target $(TARGET) $(MININET_ARGS)

# Benchmarks recorded in docs/benchmarks.md (test/bench's veth benchmark
# needs root and iperf3).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./p4rt/ ./dataplane/
	$(GO) test -run '^$$' -bench . -skip 'BenchmarkScale' -benchtime 20x ./test/bench/

# The controller at scale (issue 14, docs/benchmarks.md): four shards,
# 1,000 VPCs, 10k endpoints with 100 changes and 100k with 10: a few
# minutes each on 2 shared cores (most of it the start), so not part of
# bench. Another size: make bench-scale SCALE_SIZES=1M SCALE_CHANGES=30
# (with OHCs add SCALE_ARGS=-scale.locality=100, a VPC on 100 hosts: with
# every VPC over every host a sampled host's entries overflow its switch's
# vnet_destination table at 1M; the controllers alone: -scale.hosts=-1).
SCALE_SIZES ?=
SCALE_CHANGES ?= 100
SCALE_ARGS ?=
SCALE_BENCH = $(GO) test -run '^$$' -benchtime 1x -timeout 180m
bench-scale:
ifeq ($(SCALE_SIZES),)
	$(SCALE_BENCH) -bench 'BenchmarkScale/10k$$' ./test/bench/ -args -scale.changes=100
	$(SCALE_BENCH) -bench 'BenchmarkScale/100k$$' ./test/bench/ -args -scale.changes=10
else
	$(SCALE_BENCH) -bench 'BenchmarkScale/($(SCALE_SIZES))$$' ./test/bench/ -args -scale.changes=$(SCALE_CHANGES) $(SCALE_ARGS)
endif

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
