#!/usr/bin/env bash
# Installs the servers the provider tests run against for real: Prometheus and Redis, from
# Debian's packages. Does nothing when both are on PATH already.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing ${missing[*]} (Debian packages) for the provider tests" >&2
$sudo apt-get update -qq
# The packages' services are not started: the tests start their own servers on loopback.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
