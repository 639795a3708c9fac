#!/usr/bin/env bash
# First cache-hit comparison of fleetdns against unbound (issue 3); the full harness of issue 4
# (cmd/fleetdns-bench) replaces it. Both servers forward to the same NSD, are pinned to CPU 0,
# and answer the same dnsperf run (pinned to CPU 1) over 1000 names already in their caches.
# Reports queries per second and queries per CPU-second of the server (from /proc), and the
# ratios fleetdns/unbound. Only loopback addresses are used.
#
#   bash bench/compare-hits.sh [seconds per run, default 10] [rounds, default 2]
set -euo pipefail
secs=${1:-10}
rounds=${2:-2}
cd "$(dirname "$0")/.."
for bin in nsd unbound dnsperf taskset; do
  command -v $bin >/dev/null || [ -x /usr/sbin/$bin ] || { echo "missing $bin (apt-get install nsd unbound dnsperf)"; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Upstream: NSD with 1000 names.
{ echo '$ORIGIN bench.test.'; echo '$TTL 86400'
  echo '@ IN SOA ns.bench.test. h.bench.test. 1 3600 900 604800 300'; echo '@ IN NS ns'; echo 'ns IN A 192.0.2.1'
  for i in $(seq 0 999); do echo "h$i IN A 192.0.2.$((i % 250 + 1))"; done; } > "$work/bench.zone"
for i in $(seq 0 999); do echo "h$i.bench.test A"; done > "$work/queries"
cat > "$work/nsd.conf" <<C
server:
  ip-address: 127.0.0.1@5390
  port: 5390
  zonesdir: "$work"
  pidfile: "$work/nsd.pid"
  database: ""
  zonelistfile: "$work/zone.list"
  xfrdfile: "$work/xfrd.state"
  username: ""
  logfile: "$work/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: bench.test.
  zonefile: "$work/bench.zone"
C
taskset -c 1 /usr/sbin/nsd -d -c "$work/nsd.conf" & pids+=($!)

cat > "$work/unbound.conf" <<C
server:
  interface: 127.0.0.1@5392
  port: 5392
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  msg-cache-size: 64m
  rrset-cache-size: 128m
  prefetch: yes
  serve-expired: yes
  so-reuseport: yes
  module-config: "iterator"
  local-zone: "test." nodefault
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@5390
C
taskset -c 0 unbound -d -c "$work/unbound.conf" & pids+=($!)
unbound_pid=$!

go build -o "$work/fleetdns" ./cmd/fleetdns
cat > "$work/fleetdns.yaml" <<C
listen: ["127.0.0.1:5391"]
forward:
  - {zone: ".", upstreams: ["127.0.0.1:5390"]}
log: {level: warn}
C
taskset -c 0 "$work/fleetdns" client -config "$work/fleetdns.yaml" & pids+=($!)
fleet_pid=$!
sleep 2

cpu() { awk '{print $14 + $15}' /proc/$1/stat; }   # utime + stime, in clock ticks
tck=$(getconf CLK_TCK)
declare -A qps cpuq
for name in fleetdns unbound; do qps[$name]=""; cpuq[$name]=""; done
run() { # name port pid
  local before after out q c
  before=$(cpu "$3")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries" -c 10 -q 200 -T 1 -l "$secs" 2>&1)
  after=$(cpu "$3")
  q=$(echo "$out" | awk '/Queries per second/ {print $4}')
  c=$(awk -v q="$q" -v s="$secs" -v t="$tck" -v d="$((after - before))" 'BEGIN {printf "%.0f", q * s / (d / t)}')
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  printf '%-9s round %d: %8.0f q/s  %8s q/CPU-s  lost %s\n' "$1" "$4" "$q" "$c" "$lost"
  qps[$1]+="$q "; cpuq[$1]+="$c "
}
# Warm both caches.
for port in 5391 5392; do taskset -c 1 dnsperf -s 127.0.0.1 -p $port -d "$work/queries" -n 2 >/dev/null 2>&1; done
for r in $(seq 1 "$rounds"); do   # alternate A B A B
  run fleetdns 5391 "$fleet_pid" "$r"
  run unbound 5392 "$unbound_pid" "$r"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fq=$(echo "${qps[fleetdns]}" | median); uq=$(echo "${qps[unbound]}" | median)
fc=$(echo "${cpuq[fleetdns]}" | median); uc=$(echo "${cpuq[unbound]}" | median)
echo
echo "| system | queries/s (median) | queries per CPU-second (median) |"
echo "|---|---|---|"
echo "| unbound $(unbound -V | awk 'NR==1{print $2}') | $uq | $uc |"
echo "| fleetdns | $fq | $fc |"
awk -v a="$fq" -v b="$uq" -v c="$fc" -v d="$uc" 'BEGIN {printf "| ratio fleetdns/unbound | %.2f | %.2f |\n", a/b, c/d}'
