# vantage: see README.md. Every target works on a fresh machine with Go.
GO      ?= go
BIN     := bin
PROTO   := proto/vantage/v1

.PHONY: all build proto proto-check test test-unit test-e2e vet demo lab-up lab-down clean

all: build

build:
	$(GO) build -o $(BIN)/ ./agent/cmd/... ./controller/cmd/... ./deploy/lab/cmd/...

# Regenerate the checked-in protobuf code with the generators pinned in go.mod.
proto:
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

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
