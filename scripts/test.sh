#!/usr/bin/env bash
# Installs what the test suite needs (Debian packages, Go modules) and runs the whole suite.
# This is the one test command: README gives it, and .ci/run calls it and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null || need+=(dnsutils)
command -v nsd >/dev/null || [ -x /usr/sbin/nsd ] || need+=(nsd)
command -v ip >/dev/null || need+=(iproute2)
command -v getent >/dev/null || need+=(libc-bin)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin"

go mod download
# With the tools installed, a test that cannot find one fails instead of skipping. Tests that
# need root (network namespaces) skip without it unless this is root.
if [ "$(id -u)" -eq 0 ]; then
  export FLEETDNS_REQUIRE_TOOLS=1
fi
go vet ./...
go test -race -count=1 ./...
