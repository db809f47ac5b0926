# vantage: see README.md. Every target works on a fresh Debian machine with Go;
# as root, each target installs the system packages it uses if they are
# missing (deploy/install-deps.sh holds the one list, by group).
GO      ?= go
BIN     := bin
# --version of every binary: the tag or commit of this tree, stamped at
# build (a plain go build says "dev" and the Go module version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/vantage-net/vantage/internal/buildinfo.Version=$(VERSION)
PROTO   := proto/vantage/v1

.PHONY: all build deps proto proto-check web web-check test test-unit test-e2e test-scenarios vet fmt-check demo lab-up lab-down clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./agent/cmd/... ./controller/cmd/... ./deploy/lab/cmd/... ./deploy/demo/cmd/...

# Every system package the build, the tests, the demo and the benches use
# (deploy/install-deps.sh all: protoc and the well-known types, the lab's
# tools, the bench peers, systemd-analyze, the disk fault tools). Installs
# only what is missing, and only as root on a Debian-like system.
deps:
	@bash deploy/install-deps.sh all

# Installs a group of deploy/install-deps.sh when root; otherwise the tests
# that need a missing tool skip, naming its package.
define deps_as_root
@if [ "$$(id -u)" = 0 ]; then bash deploy/install-deps.sh $(1); fi
endef

# The main job: the 2014 story in the namespace lab, about two minutes.
# DASHBOARD=1 also serves the dashboard on http://127.0.0.1:$(WEB_PORT)/
# and keeps everything up after the story until Ctrl-C.
WEB_PORT ?= 8080
demo: build
	$(call deps_as_root,lab)
	$(BIN)/vantage-demo -bin $(BIN) -campaign deploy/examples/country.yaml $(if $(DASHBOARD),-dashboard -web-port $(WEB_PORT))

# Unit tests with the race detector (lab tests run here too when root), then
# the end-to-end test in the lab (skips clearly without root).
test: test-unit test-e2e

test-unit:
	$(call deps_as_root,lab peers units)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /deploy/demo$$ -e /deploy/scenarios$$ -e /deploy/reliability$$)

test-e2e:
	$(call deps_as_root,lab)
	$(GO) test -count=1 -v -timeout 15m ./deploy/demo/

# The verdict scenario suite in the lab (deploy/scenarios): blackout, border
# cut, flapping, partial restoration, isolation, ICMP filtering, vantages
# leaving, and a steady run with a lossy vantage; prints state, location and
# detection latency in rounds per scenario. Root; skips clearly without it.
test-scenarios:
	$(call deps_as_root,lab web)
	$(GO) test -count=1 -v -timeout 45m ./deploy/scenarios/

# Reliability tests (deploy/reliability): processes SIGKILLed, links cut,
# acks lost, spools filled, the controller's disk stalled (fsfreeze) and
# filled, an agent's disk filled; each prints its counts. Root tests skip
# clearly. Then the fuzzers, and a 60 s ingest load run that fails below
# the 250,000 results/s target.
.PHONY: test-reliability
test-reliability:
	$(call deps_as_root,lab faults)
	$(GO) test -count=1 -v -timeout 12m ./deploy/reliability/
	$(MAKE) fuzz-controller FUZZTIME=150000x
	$(MAKE) bench-ingest INGEST_FLAGS="-duration 60s -sample 10s -min-rate 250000"

# Controller ingest under load (deploy/loadtest): 1,000 simulated agents,
# each enrolled for real, stream results over mTLS on loopback to a real
# controller with SQLite; prints sustained results/s, batch send->ack p50/p99
# and the controller's RSS over time. 5 minutes by default; options go in
# INGEST_FLAGS (e.g. "-agents 100 -duration 60s").
# The dashboard's campaign page for a 65,536-target campaign: the server's
# load (shell, view, a targets page) and Chromium's, navigation to drawn;
# each fails at 2 s or more.
.PHONY: bench-dashboard
bench-dashboard:
	$(call deps_as_root,web)
	$(GO) test -count=1 -run '^$$' -bench 'CampaignPage65536' -benchtime 5x ./controller/web/

# vantagectl export of 1M stored results: the client's RSS and the
# controller's heap growth, against 100k (constant memory), and results/s.
.PHONY: bench-export
bench-export:
	$(GO) test -count=1 -run '^$$' -bench 'Export1MResults' -benchtime 1x ./controller/cmd/vantagectl/

.PHONY: bench-ingest
bench-ingest:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./controller/cmd/vantage-controller ./deploy/loadtest/cmd/vantage-loadtest
	$(BIN)/vantage-loadtest -bin $(BIN) $(INGEST_FLAGS)

# The controller's fuzz targets (campaign files, prefix files, agent
# messages, CSRs, enrolment fields), FUZZTIME each (default 2m). CI gives
# a count (150000x), not a duration: Go 1.26's fuzz coordinator can report
# a bare "context deadline exceeded" when a duration ends mid-exec
# (go.dev/issue/75804, fixed in Go 1.27), which failed CI once here.
FUZZTIME ?= 2m
.PHONY: fuzz-controller
fuzz-controller:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./controller/campaign/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePrefixes$$' -fuzztime $(FUZZTIME) ./controller/campaign/
	$(GO) test -run '^$$' -fuzz '^FuzzAgentMessage$$' -fuzztime $(FUZZTIME) ./controller/ingest/
	$(GO) test -run '^$$' -fuzz '^FuzzCheckCSR$$' -fuzztime $(FUZZTIME) ./controller/fleet/
	$(GO) test -run '^$$' -fuzz '^FuzzEnrollFields$$' -fuzztime $(FUZZTIME) ./controller/fleet/

# vantage's probe engines side by side with fping, zmap and scamper in the lab
# (deploy/bench): prints the table of docs/BENCHMARKS.md with each target
# PASS or FAIL. Needs root (runs through sudo otherwise); installs the peers if
# missing; about 5 minutes, 3.5 of them the idle agent. Options go in
# BENCH_FLAGS, e.g. make bench-probe BENCH_FLAGS="-idle 0 -keep".
.PHONY: bench-probe
bench-probe: build
	$(GO) build -o $(BIN)/ ./deploy/bench/cmd/vantage-bench
	@if [ "$$(id -u)" = 0 ]; then bash deploy/install-deps.sh lab peers; \
	else sudo bash deploy/install-deps.sh lab peers; fi
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/vantage-bench -bin $(BIN) $(BENCH_FLAGS); \
	else sudo $(BIN)/vantage-bench -bin $(BIN) $(BENCH_FLAGS); fi

lab-up: build
	@bash deploy/install-deps.sh lab
	$(BIN)/vantage-lab up

lab-down: build
	$(BIN)/vantage-lab down

# Regenerate the checked-in protobuf code with the generators pinned in go.mod
# (protoc comes from Debian's protobuf-compiler and the well-known types from
# libprotobuf-dev; deploy/check-protoc.sh checks both first and names the
# missing package).
proto:
	@bash deploy/check-protoc.sh $(PROTO)
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I proto \
		--plugin=protoc-gen-go=$(BIN)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		$(PROTO)/*.proto

# Fails if regenerating the protobuf code changes anything.
proto-check: proto
	@git diff --exit-code -- $(PROTO) || { echo "proto-check: generated code is stale; run 'make proto' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- $(PROTO))" || { echo "proto-check: untracked generated files" >&2; git status --porcelain -- $(PROTO); exit 1; }

# The dashboard's front end: npm ci installs exactly package-lock.json's
# versions, esbuild bundles ui/src into controller/web/static, which is
# checked in and embedded (go:embed) like the generated protos.
WEB := controller/web/static
web:
	$(call deps_as_root,web)
	cd controller/web/ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

web-check: web
	@git diff --exit-code -- $(WEB) || { echo "web-check: the bundle is stale; run 'make web' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- $(WEB))" || { echo "web-check: untracked bundle files" >&2; git status --porcelain -- $(WEB); exit 1; }

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BIN)
