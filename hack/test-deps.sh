#!/usr/bin/env bash
# Installs the servers the tests run against for real, from Debian's packages: Prometheus and
# Redis (the provider tests), docker-registry (the image tests push and pull the operator's
# image) and runc (the end-to-end test runs the image; Debian's crun 1.8 refuses hosts with
# hybrid cgroups). Does nothing when all are on PATH already.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v runc >/dev/null || missing+=(runc)
[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing ${missing[*]} (Debian packages) for the tests" >&2
$sudo apt-get update -qq
# The packages' services are not started: the tests start their own servers on loopback.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
