#!/usr/bin/env bash
# Writes what the operator's Helm chart shares with config/, so that `make generate` keeps them in
# step (test/manifests fails when they drift):
# - the CRDs as templates (templates/crds/), not in crds/: Helm installs crds/ once and never
#   upgrades it; as templates, `helm upgrade` applies a new version's schema. `crds.install`
#   turns them off, `crds.keep` (default) leaves them, and every migration, on `helm uninstall`;
# - the manager's rules (controller-gen's role.yaml) and the leader election Role, which the
#   chart's templates read from files/.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/mastodon-operator
rm -rf "$chart/crds" "$chart/templates/crds"
mkdir -p "$chart/templates/crds" "$chart/files"
for crd in config/crd/bases/*.yaml; do
  out="$chart/templates/crds/$(basename "$crd")"
  {
    echo "# Generated from $crd by hack/sync-chart.sh: do not edit."
    echo "{{- if .Values.crds.install }}"
    sed -e '/^  annotations:$/a\
    {{- if .Values.crds.keep }}\
    helm.sh/resource-policy: keep\
    {{- end }}' -e '/^  name: .*migration.mastodon-operator.io$/a\
  labels: {{- include "mastodon-operator.labels" . | nindent 4 }}' "$crd"
    echo "{{- end }}"
  } >"$out"
done
cp config/rbac/role.yaml "$chart/files/manager-role.yaml"
cp config/rbac/leader_election_role.yaml "$chart/files/leader-election-role.yaml"
