#!/usr/bin/env bash
# Installs what the test suite needs (Debian packages, Go modules) and runs the whole suite.
# This is the one test command: README gives it, and .ci/run calls it and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the real upstream (nsd), real clients (dig, getent), network namespaces
# (iproute2), the BGP router of the anycast tests (bird2), the packet dropper of the chaos lab
# (nftables), and the peers the benchmark harness measures fleetdns against.
has() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
need=()
has dig || need+=(dnsutils)
has nsd || need+=(nsd)
has ip || need+=(iproute2)
has getent || need+=(libc-bin)
has taskset || need+=(util-linux)
has unbound || need+=(unbound)
has dnsmasq || need+=(dnsmasq-base)
has pdns_recursor || need+=(pdns-recursor)
has dnsdist || need+=(dnsdist)
has kresd || need+=(knot-resolver)
has dnsperf || need+=(dnsperf)
has bird || need+=(bird2)
has vtysh || need+=(frr)   # the shipped FRR router snippet is parsed and started by configs/ tests
has nft || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  # Where systemd runs, the packages start their own services; tests and benchmarks start
  # their own instances on free ports, so the system ones would only take CPU.
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now unbound pdns-recursor dnsdist kresd@1 nsd bird frr 2>/dev/null || true
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin"

go mod download
# With the tools installed, a test that cannot find one fails instead of skipping. Tests that
# need root (network namespaces) skip without it unless this is root.
if [ "$(id -u)" -eq 0 ]; then
  export FLEETDNS_REQUIRE_TOOLS=1 FLEETDNS_BENCH_REQUIRE_PEERS=1
fi
go vet ./...
# The chaos lab (bench/chaos) measures latencies against targets of a few milliseconds, so it
# runs alone after the rest (go test runs packages in parallel, and the others' tests would
# share its CPUs) and without -race, which doubles the load generator's own latency (cached
# p99 5-10 ms instead of 1-5 ms for unbound); the load generator is race-tested in bench. Every
# step runs even if one before it fails.
rc=0
go test -race -count=1 $(go list ./... | grep -v '/bench/chaos$') || rc=1
# Each native fuzz target briefly (go runs one -fuzz target per invocation): new inputs beyond
# the seed corpora, which the run above already replays. A crasher lands in the package's
# testdata/fuzz/<target>/; keep it there as a regression input.
for target in resolver:FuzzAnswer resolver/upstream:FuzzUpstreamAnswer policy:FuzzZoneFile cmd/fleetdns:FuzzParseConfig; do
  go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime 10s "./${target%%:*}/" || rc=1
done
go test -count=1 ./bench/chaos || rc=1
exit $rc
