# tcpscope. `make help` lists the targets.

# sudo resets PATH to secure_path, which lacks Go's usual home.
GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN := tcpscope

.PHONY: help build generate test lint bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build ./tcpscope (no clang needed: the BPF objects are committed)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tcpscope

generate: ## rebuild the BPF objects and their Go bindings (needs clang-16, llvm-16, libbpf-dev)
	cd tracer && $(GO) generate ./...

# Where the tests keep their artifacts (the browser test's screenshot of
# the HTML report): go test needs the directory to exist.
ARTIFACTS ?= $(CURDIR)/test-artifacts

test: ## all tests; the kernel tests need root (sudo make test); artifacts in $(ARTIFACTS)
	mkdir -p $(ARTIFACTS)
	$(GO) test -count=1 -timeout 30m -artifacts -outputdir $(ARTIFACTS) ./...

lint: ## gofmt and go vet (cmd/internal/otelcol, a module of its own, too)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	cd cmd/internal/otelcol && $(GO) vet ./...

clean: ## remove the built binaries
	rm -f $(BIN) overhead tcpscope-demo.html

# cmd/overhead's flags: -memory N also holds N live connections under
# tcpscope (bytes per connection, user space and kernel); see -help.
OVERHEAD_FLAGS ?= -memory 10000

bench: build ## micro-benchmarks, then tcpscope against tcpdump, tcplife, tcpstates (root: sudo make bench)
	$(GO) test -run '^$$' -bench . -benchmem ./tracer ./tracer/cgroups ./output ./output/otlp ./output/html
	$(GO) build -o overhead ./cmd/overhead
	./overhead -tcpscope ./$(BIN) $(OVERHEAD_FLAGS)

demo: build ## build tcpscope and run the built-in demo, its HTML report in tcpscope-demo.html (needs root: sudo make demo)
	./$(BIN) demo --html tcpscope-demo.html
