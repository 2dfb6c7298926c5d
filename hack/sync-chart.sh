#!/usr/bin/env bash
# Copies the generated CRDs and the manager's ClusterRole rules into the operator's Helm chart, so
# `make manifests` keeps config/ and charts/ in step (a test fails when they drift).
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/mastodon-operator
rm -f "$chart"/crds/*.yaml
cp config/crd/bases/*.yaml "$chart/crds/"
cp config/rbac/role.yaml "$chart/files/manager-role.yaml"
