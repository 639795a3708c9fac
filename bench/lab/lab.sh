#!/usr/bin/env bash
# The anycast lab: one router (BIRD 2), two fleetdns server nodes announcing 198.51.100.53/32,
# an upstream (NSD) and a client, each in its own network namespace, wired with veth pairs.
# Only TEST-NET addresses, only inside these namespaces.
#
#   sudo bash bench/lab/lab.sh up      # build fleetdns, start everything, print how to play
#   sudo bash bench/lab/lab.sh status  # routes on the router, answers seen by the client
#   sudo bash bench/lab/lab.sh down    # stop everything (by PID) and delete the namespaces
#
# LAB_DIR (default /tmp/fleetdns-lab) holds configs, logs, PID files and control sockets.
# LAB_DCS=2 adds a second datacenter's recursor (NSD at 192.0.2.18) and turns on the nodes'
# datacenter failover: cut dc1's recursor off and watch the nodes fail over to dc2 and back.
# LAB_FLEETDNS, if set, is a fleetdns binary to run instead of building ./cmd/fleetdns;
# LAB_ZONE_EXTRA, if set, is a file of records appended to the lab.test zone (the chaos lab's
# short-TTL names).
# LAB_SIBLINGS=1 lists each node as the other's health sibling: an upstream cut for both nodes
# is a shared fault (both stay announced, serving cache and stale); a cut of one node's path
# withdraws that node only.
# LAB_ANNOUNCE=kernel runs the nodes with announce: kernel and BIRD 2 on each node running the
# shipped configs/node-bird.conf (included unchanged; the lab sets the router ID and adds its
# session to the router from the snippet's template): fleetdns adds the anycast address to its
# TUN device fleetdns0 while healthy, and the node's BIRD exports it.
# LAB_INTERVAL and LAB_TIMEOUT (1s, 500ms) are the nodes' health interval and timeout;
# LAB_DRAIN (2s) their shutdown drain.
#
# The router runs the shipped snippet configs/router-bird.conf unchanged (included, so its
# filter, template and ECMP kernel protocol are the ones users get); the lab adds only its own
# two sessions, from the snippet's template, with shorter timers. The snippet's own example
# sessions (192.0.2.21/.22) have no neighbor here and stay idle.
#
# Single daemons, for tests that restart them in their own order (by PID, as down does):
#   lab.sh stop NAME...   # SIGTERM (SIGCONT first), wait for the exit, SIGKILL after 10 s
#   lab.sh node N         # start node N (1 or 2) again with its config
#   lab.sh nsd            # start dc1's NSD again
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
LAB_DIR=${LAB_DIR:-/tmp/fleetdns-lab}
P=${LAB_PREFIX:-fdl}            # namespace prefix, so two labs can coexist
NS_R=$P-rtr NS_1=$P-n1 NS_2=$P-n2 NS_U=$P-up NS_C=$P-cl NS_U2=$P-up2
DCS=${LAB_DCS:-1}
ANNOUNCE=${LAB_ANNOUNCE:-bgp}
ANYCAST=198.51.100.53
HOLD=${LAB_HOLD:-3s}
HEALTH_FALL=2
[ "${LAB_DCS:-1}" = 2 ] && HEALTH_FALL=4   # let the failover (about 1s) act before the health check withdraws

x() { ip netns exec "$@"; }

link() { # ns_a addr_a ns_b addr_b name
  ip link add "$5a" type veth peer name "$5b"
  ip link set "$5a" netns "$1"; ip link set "$5b" netns "$3"
  x "$1" ip addr add "$2/30" dev "$5a"; x "$1" ip link set "$5a" up
  x "$3" ip addr add "$4/30" dev "$5b"; x "$3" ip link set "$5b" up
}

start() { # ns name cmd...: run in the background, PID to $LAB_DIR/name.pid, log to name.log
  local ns=$1 name=$2; shift 2
  # ip netns exec execs the program, so $! is the program's own PID.
  ip netns exec "$ns" "$@" >"$LAB_DIR/$name.log" 2>&1 &
  echo $! >"$LAB_DIR/$name.pid"
}

node_config() { # n addr
  cat <<C
listen: ["$ANYCAST:53", "$2:53"]
access_control: ["192.0.2.0/24", "127.0.0.0/8"]
forward:
  - {zone: ".", upstreams: ["192.0.2.14:53"]}
cache: {size: 10000}
control: {socket: "$LAB_DIR/n$1.sock"}
metrics: {listen: "$2:9153"}
node: {id: "lab-n$1", datacenter: "dc1"}
C
  if [ "$ANNOUNCE" = kernel ]; then
    # BIRD on the node exports what fleetdns adds to fleetdns0 (configs/node-bird.conf).
    echo "announce: kernel"
    echo "kernel: {prefixes: [\"$ANYCAST/32\"]}"
  else
    cat <<C
bgp:
  asn: 65053
  router_id: $2
  peers: [{address: $3, asn: 65000, local_address: $2, hold_time: $HOLD}]
  announce:
    - {prefix: $ANYCAST/32, priority: primary, communities: ["65000:53"]}
  shutdown: {mode: graceful, drain: ${LAB_DRAIN:-2s}}
C
  fi
  local timers="interval: ${LAB_INTERVAL:-1s}, timeout: ${LAB_TIMEOUT:-500ms}, rise: 2, fall: $HEALTH_FALL"
  if [ "${LAB_SIBLINGS:-}" != 1 ]; then
    echo "health: {name: \"health.lab.test.\", type: A, $timers}"
  else
    local sib=192.0.2.6; [ "$1" = 2 ] && sib=192.0.2.2
    echo "health: {name: \"health.lab.test.\", type: A, $timers, siblings: [\"$sib:53\"], listen: \"$2:8053\"}"
  fi
  if [ "$DCS" = 2 ]; then
    cat <<C
failover:
  interval: 500ms
  timeout: 300ms
  canary: {name: canary.lab.test., type: A, expect: 192.0.2.99}
  local: ["192.0.2.14:53"]
  remote: ["192.0.2.18:53"]
C
  fi
}

node_bird() { # n addr router: BIRD on a node, the shipped snippet with the lab's ID and session
  cat <<C
log "$LAB_DIR/birdn$1.daemon.log" all;
include "$REPO/configs/node-bird.conf";
router id $2;
protocol bgp lab from uplink { neighbor $3 as 65000; source address $2; hold time 3; keepalive time 1; connect retry time 1; }
C
}

nsd_config() { # addr name
  cat <<C
server:
  ip-address: $1
  port: 53
  zonesdir: "$LAB_DIR"
  pidfile: "$LAB_DIR/$2.pidfile"
  database: ""
  zonelistfile: "$LAB_DIR/$2.zone.list"
  xfrdfile: "$LAB_DIR/$2.xfrd.state"
  username: ""
  logfile: "$LAB_DIR/$2.daemon.log"
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: lab.test.
  zonefile: "$LAB_DIR/lab.test.zone"
C
}

up() {
  [ "$(id -u)" -eq 0 ] || { echo "run as root"; exit 1; }
  for b in bird birdc nsd ip ${LAB_FLEETDNS:-go}; do command -v $b >/dev/null || [ -x /usr/sbin/$b ] || { echo "missing $b (apt-get install bird2 nsd iproute2)"; exit 1; }; done
  down quiet
  mkdir -p "$LAB_DIR"
  if [ -n "${LAB_FLEETDNS:-}" ]; then cp "$LAB_FLEETDNS" "$LAB_DIR/fleetdns"; else go build -o "$LAB_DIR/fleetdns" ./cmd/fleetdns; fi
  local all="$NS_R $NS_1 $NS_2 $NS_U $NS_C"
  [ "$DCS" = 2 ] && all="$all $NS_U2"
  for ns in $all; do ip netns add "$ns"; x "$ns" ip link set lo up; done
  link $NS_R 192.0.2.1 $NS_1 192.0.2.2 ${P}1
  link $NS_R 192.0.2.5 $NS_2 192.0.2.6 ${P}2
  link $NS_R 192.0.2.9 $NS_C 192.0.2.10 ${P}c
  link $NS_R 192.0.2.13 $NS_U 192.0.2.14 ${P}u
  if [ "$DCS" = 2 ]; then
    link $NS_R 192.0.2.17 $NS_U2 192.0.2.18 ${P}v
    x $NS_U2 ip route add default via 192.0.2.17
  fi
  x $NS_R sysctl -qw net.ipv4.ip_forward=1
  x $NS_R sysctl -qw net.ipv4.fib_multipath_hash_policy=1   # spread flows by ports too
  x $NS_1 ip route add default via 192.0.2.1
  x $NS_2 ip route add default via 192.0.2.5
  x $NS_C ip route add default via 192.0.2.9
  x $NS_U ip route add default via 192.0.2.13
  if [ "$ANNOUNCE" != kernel ]; then   # with announce: kernel, fleetdns adds it while healthy
    x $NS_1 ip addr add $ANYCAST/32 dev lo
    x $NS_2 ip addr add $ANYCAST/32 dev lo
  fi

  # The upstream: NSD answering the lab zone, including the nodes' health name.
  cat >"$LAB_DIR/lab.test.zone" <<Z
\$ORIGIN lab.test.
\$TTL 60
@ IN SOA ns.lab.test. h.lab.test. 1 3600 900 604800 60
@ IN NS ns
ns IN A 192.0.2.14
health 0 IN A 192.0.2.99
short 1 IN A 203.0.113.82
canary IN A 192.0.2.99
www IN A 203.0.113.80
* IN A 203.0.113.81
Z
  [ -z "${LAB_ZONE_EXTRA:-}" ] || cat "$LAB_ZONE_EXTRA" >>"$LAB_DIR/lab.test.zone"
  nsd_config 192.0.2.14 nsd >"$LAB_DIR/nsd.conf"
  start $NS_U nsd /usr/sbin/nsd -d -c "$LAB_DIR/nsd.conf"
  if [ "$DCS" = 2 ]; then
    nsd_config 192.0.2.18 nsd2 >"$LAB_DIR/nsd2.conf"
    start $NS_U2 nsd2 /usr/sbin/nsd -d -c "$LAB_DIR/nsd2.conf"
  fi

  # The router: the shipped snippet (eBGP with the nodes, ECMP into its kernel table, only
  # anycast /32s accepted, GRACEFUL_SHUTDOWN (65535:0) honoured by dropping the path's
  # preference to 0), plus the lab's two sessions from its template.
  cat >"$LAB_DIR/bird.conf" <<C
log "$LAB_DIR/bird.daemon.log" all;
include "$REPO/configs/router-bird.conf";
protocol bgp n1 from fleetdns { neighbor 192.0.2.2 as 65053; source address 192.0.2.1; hold time 3; keepalive time 1; connect retry time 1; }
protocol bgp n2 from fleetdns { neighbor 192.0.2.6 as 65053; source address 192.0.2.5; hold time 3; keepalive time 1; connect retry time 1; }
C
  start $NS_R bird /usr/sbin/bird -f -c "$LAB_DIR/bird.conf" -s "$LAB_DIR/bird.ctl"

  node_config 1 192.0.2.2 192.0.2.1 >"$LAB_DIR/n1.yaml"
  node_config 2 192.0.2.6 192.0.2.5 >"$LAB_DIR/n2.yaml"
  if [ "$ANNOUNCE" = kernel ]; then
    node_bird 1 192.0.2.2 192.0.2.1 >"$LAB_DIR/birdn1.conf"
    node_bird 2 192.0.2.6 192.0.2.5 >"$LAB_DIR/birdn2.conf"
    start $NS_1 birdn1 /usr/sbin/bird -f -c "$LAB_DIR/birdn1.conf" -s "$LAB_DIR/birdn1.ctl"
    start $NS_2 birdn2 /usr/sbin/bird -f -c "$LAB_DIR/birdn2.conf" -s "$LAB_DIR/birdn2.ctl"
  fi
  start $NS_1 n1 "$LAB_DIR/fleetdns" server -config "$LAB_DIR/n1.yaml"
  start $NS_2 n2 "$LAB_DIR/fleetdns" server -config "$LAB_DIR/n2.yaml"
  [ "${1:-}" = quiet ] || cat <<H
Lab up in $LAB_DIR. Try:
  ip netns exec $NS_C dig @$ANYCAST www.lab.test             # answered by whichever node the router picks
  ip netns exec $NS_C dig @$ANYCAST id.server CH TXT +nsid   # which node answered
  birdc -s $LAB_DIR/bird.ctl show route all                  # two ECMP paths once both are healthy
  $LAB_DIR/fleetdns ctl -socket $LAB_DIR/n1.sock bgp
  ip netns exec $NS_R ip link set ${P}ua down               # dc1's recursor cut off: with LAB_DCS=2 the
  $LAB_DIR/fleetdns ctl -socket $LAB_DIR/n1.sock failover   #   nodes fail over to dc2; else they withdraw
  kill \$(cat $LAB_DIR/n1.pid)                                  # planned shutdown of n1: drains, then withdraws
  sudo bash bench/lab/lab.sh status | down
H
}

status() {
  birdc -s "$LAB_DIR/bird.ctl" show route all 2>/dev/null || echo "router not running"
  for i in 1 2 3 4; do
    x $NS_C dig +short +time=1 +tries=1 @$ANYCAST id.server CH TXT 2>/dev/null || true
  done
}

down() {
  for f in "$LAB_DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true
  done
  sleep 1
  for f in "$LAB_DIR"/*.pid; do
    [ -e "$f" ] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true; rm -f "$f"
  done
  # Anything still running in the lab's namespaces was started by the lab (children, orphans).
  for ns in $NS_R $NS_1 $NS_2 $NS_U $NS_C $NS_U2; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ "${1:-}" = quiet ] || echo "lab down"
}

stop() { # name...: by PID, as down does, and wait for each to exit
  local name pid
  for name in "$@"; do
    [ -e "$LAB_DIR/$name.pid" ] || continue
    pid=$(cat "$LAB_DIR/$name.pid")
    kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true
  done
  for name in "$@"; do
    [ -e "$LAB_DIR/$name.pid" ] || continue
    pid=$(cat "$LAB_DIR/$name.pid")
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$LAB_DIR/$name.pid"
  done
}

case "${1:-}" in
  up) up "${2:-}" ;;
  status) status ;;
  down) down ;;
  stop) shift; stop "$@" ;;
  node) start "$P-n$2" "n$2" "$LAB_DIR/fleetdns" server -config "$LAB_DIR/n$2.yaml" ;;
  nsd) start $NS_U nsd /usr/sbin/nsd -d -c "$LAB_DIR/nsd.conf" ;;
  *) echo "usage: $0 up|status|down|stop NAME...|node N|nsd"; exit 2 ;;
esac
