# Warren build entry points. `make demo` and `make test` are the README's two
# commands; both install what they need (hack/deps.sh) on a fresh machine.
SHELL := /bin/bash
export GOTOOLCHAIN := local
export GOFLAGS := -buildvcs=false


KUBE_VERSION   ?= v1.36.3
CACHE          := $(CURDIR)/.cache
KUBE_BIN_DIR   := $(CACHE)/kube/$(KUBE_VERSION)/bin
export KUBEBUILDER_ASSETS := $(KUBE_BIN_DIR)
STATICCHECK    := $(CACHE)/bin/staticcheck
STATICCHECK_VERSION := v0.8.2
TEST_TIMEOUT   ?= 45m
BINARIES       := istiod-lite warrenctl waypoint warren-cni warren-node-agent

.PHONY: all build test e2e demo bench conformance generate lint deps kube-bins fmt clean

all: build

## deps: install every Debian package and pinned Go tool any target needs
deps:
	hack/deps.sh all

## build: compile every package and the binaries into bin/
build:
	go build ./...
	@mkdir -p bin
	CGO_ENABLED=0 go build -o bin/ $(addprefix ./cmd/,$(BINARIES))

## kube-bins: build (once, cached) the Kubernetes binaries: etcd and kube-apiserver for
## envtest integration tests, the rest for the local cluster (e2e/cluster)
kube-bins:
	KUBE_VERSION=$(KUBE_VERSION) KUBE_BIN_DIR=$(KUBE_BIN_DIR) hack/kube-bins.sh \
	  etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy

## test: the README's test command, what CI runs
test:
	hack/deps.sh test cluster
	$(MAKE) --no-print-directory kube-bins
	$(MAKE) --no-print-directory lint
	go test -timeout $(TEST_TIMEOUT) -count=1 ./...

## lint: gofmt, go vet, staticcheck (pinned)
lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(CACHE)/bin go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## generate: regenerate protobuf code and the eBPF objects (bpf2go; needs clang, installed by deps)
generate:
	hack/deps.sh generate
	PATH=$(CACHE)/bin:$$PATH protoc -I . --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. \
	  istiod-lite/api/ca/v1/ca.proto
	PATH=$(CACHE)/bin:$$PATH protoc -I . --go_out=paths=source_relative:. \
	  istiod-lite/api/warren/v1/ztunnel.proto istiod-lite/api/warren/v1/waypoint.proto
	cd redirect/bpf && GOPACKAGE=bpf go tool bpf2go -target bpfel -output-stem capture -cc clang -strip llvm-strip \
	  -cflags "-O2 -g -Wall -Werror -I/usr/include/$$(clang -print-multiarch)" Capture c/capture.c

## bench: run the benchmarks side by side and print the ratios (see BENCHMARKS.md)
bench:
	hack/deps.sh bench
	bench/run.sh

## demo: the smallest real Warren that runs today (grows with every issue)
demo: build
	hack/deps.sh test
	hack/demo.sh

## e2e: end-to-end tests on the local multi-node cluster (root)
e2e:
	hack/deps.sh test cluster
	$(MAKE) --no-print-directory kube-bins
	go test -tags e2e -count=1 -timeout 30m ./e2e/...

## conformance: upstream Gateway API conformance (MESH-HTTP, MESH-GRPC) on the local cluster (root);
## report, command and tables under conformance/reports/ (CONFORMANCE_RUN_TEST=<name> runs one test)
conformance:
	hack/deps.sh test cluster
	$(MAKE) --no-print-directory kube-bins
	hack/conformance.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin bench/out

# Local multi-node Kubernetes (e2e/cluster, docs/local-cluster.md). Root only.
LOCALKUBE := go run ./e2e/cluster/cmd/localkube
.PHONY: cluster-up cluster-down demo-down

## cluster-up: start the local cluster (2 nodes; builds Kubernetes once, installs Debian packages); prints export KUBECONFIG=...
cluster-up:
	$(LOCALKUBE) up

## cluster-down: remove everything cluster-up created and restore the sysctls it changed
cluster-down:
	$(LOCALKUBE) down

## demo-down: tear down what `make demo` brought up (the local cluster)
demo-down: cluster-down
