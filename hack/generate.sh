#!/usr/bin/env bash
# Generates everything derived from the markers: deepcopy functions, CRDs, the manager's RBAC, and
# their copies in the operator's chart; and config/manager's Deployment from the chart's; and docs/api.md from the CRDs. `make generate manifests` and test/manifests both run it.
# Usage: hack/generate.sh [ROOT]   (ROOT defaults to this checkout)
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
bin=${MASTODON_OPERATOR_BIN_DIR:-$("$(dirname "$0")/tools/build.sh")}
cd "$root"
"$bin/controller-gen" object:headerFile=hack/boilerplate.go.txt paths="./api/..."
"$bin/controller-gen" rbac:roleName=mastodon-operator crd paths="./api/...;./controllers/..." \
  output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
hack/sync-chart.sh
# The kustomize Deployment, rendered from the chart.
go run ./hack/manager-manifest .
# The API reference, from the CRDs.
go run ./hack/apidocs -o docs/api.md config/crd/bases/*.yaml
