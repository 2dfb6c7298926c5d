# mastodon-operator: a Kubernetes operator that moves a Kustomize-managed Mastodon to the
# official Helm chart. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= ghcr.io/mastodon-operator/mastodon-operator:latest
# Where `make cluster-up` keeps the local cluster's state and kubeconfig.
LOCAL_CLUSTER_DIR ?= bin/local-cluster
# go test flags; `make test TEST_FLAGS=-run=TestX` narrows a run.
TEST_FLAGS ?=
# hack/bench flags; `make bench BENCH_FLAGS="-runs=1 -sizes=1,10"` is a short run.
BENCH_FLAGS ?=

# The control plane, kwok and controller-gen, built from the versions pinned in hack/tools/*/go.mod
# into a cache shared by every checkout on this machine. Evaluated only by the targets that use it.
TOOLS_BIN = $(shell hack/tools/build.sh)
# The kubectl of install, uninstall and deploy: the user's on PATH, for the user's cluster; on a
# machine without one, the tools' (built on first use), so `make cluster-up && make install` works.
KUBECTL ?= $(or $(shell command -v kubectl),$(TOOLS_BIN)/kubectl)

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: tools
tools: ## Build the pinned tools (etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok, controller-gen).
	@hack/tools/build.sh

.PHONY: manifests
manifests: generate ## Generate the CRDs and RBAC from the markers (same as generate).

.PHONY: generate
generate: ## Generate deepcopy, CRDs and RBAC from the markers, and copy them into the operator's chart.
	MASTODON_OPERATOR_BIN_DIR=$(TOOLS_BIN) hack/generate.sh

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: test-deps
test-deps: ## Install Prometheus and Redis from Debian's packages, for the provider tests.
	hack/test-deps.sh

.PHONY: test
test: ## Run every test (unit, envtest, end-to-end on the local cluster), building and installing what they need.
	$(eval BIN := $(TOOLS_BIN))
	hack/test-deps.sh
	go vet ./...
	MASTODON_OPERATOR_BIN_DIR=$(BIN) KUBEBUILDER_ASSETS=$(BIN) go test ./... -count=1 -timeout 40m $(TEST_FLAGS)

.PHONY: bench
bench: ## Benchmark at hosting scale on the local cluster and print one table (BENCH_FLAGS=-runs=1 -sizes=1,10 for a short run).
	$(eval BIN := $(TOOLS_BIN))
	hack/test-deps.sh
	MASTODON_OPERATOR_BIN_DIR=$(BIN) KUBEBUILDER_ASSETS=$(BIN) go run ./hack/bench $(BENCH_FLAGS)

##@ Local cluster

.PHONY: cluster-up
cluster-up: ## Start the local cluster (etcd, apiserver, controller-manager, scheduler, kwok) and write its kubeconfig.
	$(eval BIN := $(TOOLS_BIN))
	MASTODON_OPERATOR_BIN_DIR=$(BIN) go run ./hack/localcluster up --dir $(LOCAL_CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## Stop the local cluster.
	go run ./hack/localcluster down --dir $(LOCAL_CLUSTER_DIR)

.PHONY: demo
demo: ## Run the demo: local cluster, a production-like Mastodon, and a MastodonMigration.
	$(eval BIN := $(TOOLS_BIN))
	MASTODON_OPERATOR_BIN_DIR=$(BIN) go run ./hack/demo

##@ Build and deploy

.PHONY: build
build: ## Build the manager binary and the kubectl plugin (bin/kubectl-mastodon).
	CGO_ENABLED=0 go build -trimpath -o bin/manager .
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-mastodon ./cmd/kubectl-mastodon

.PHONY: run
run: ## Run the manager against the cluster of the current kubeconfig.
	go run . --leader-elect=false

.PHONY: install
install: ## Install the CRDs into the cluster of the current kubeconfig (KUBECTL: kubectl on PATH).
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every MastodonMigration and MastodonRollback) from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator (CRDs, RBAC, manager) with kustomize into the current cluster, image IMG.
	$(eval KUBECTL := $(KUBECTL))
	$(KUBECTL) kustomize config/default | sed 's|controller:latest|$(IMG)|' | $(KUBECTL) apply --server-side -f -

.PHONY: image
image: ## Build the operator image without a Docker engine: bin/image (OCI layout) and bin/image.tar (docker load).
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o bin/linux/manager .
	go run ./hack/image --binary bin/linux/manager --ref $(IMG) --revision "$$(git rev-parse HEAD 2>/dev/null)"

.PHONY: image-push
image-push: ## Build the image as make image does and push it to IMG with your Docker config's credentials: make image-push IMG=REGISTRY/mastodon-operator:TAG
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o bin/linux/manager .
	go run ./hack/image --binary bin/linux/manager --ref $(IMG) --revision "$$(git rev-parse HEAD 2>/dev/null)" --push $(IMG)

.PHONY: docker-build
docker-build: ## Build the operator image (needs a Docker engine).
	docker build -t $(IMG) .
