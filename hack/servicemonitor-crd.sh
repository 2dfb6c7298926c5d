#!/usr/bin/env bash
# Copies the Prometheus Operator's own ServiceMonitor CRD, as the project ships it in its Go module
# (example/prometheus-operator-crd/), into test/testdata/prometheus-operator/, against which the
# e2e test TestOperatorChartNamespacedMode checks the chart's ServiceMonitor. Run it again after
# changing VERSION (the newest release of the main module the Go proxy serves here).
set -euo pipefail
VERSION=v0.85.0
module=github.com/prometheus-operator/prometheus-operator
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Outside the repository's module, so that go.mod is left alone.
dir=$(cd "$work" && go mod download -json "$module@$VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ]; then
	echo "go mod download $module@$VERSION gave no directory" >&2
	exit 1
fi
out="$root/test/testdata/prometheus-operator"
mkdir -p "$out"
cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$out/"
chmod 0644 "$out/monitoring.coreos.com_servicemonitors.yaml"
echo "$out/monitoring.coreos.com_servicemonitors.yaml: $module $VERSION"
