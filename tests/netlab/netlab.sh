#!/usr/bin/env bash
# NAT lab of network namespaces for syncice's tests (tests/netlab/test_netlab.py).
#
#   netlab.sh up [PREFIX]       build the lab, start coturn and the WAN wire; prints the
#                               lab's addresses as shell variables (NETLAB_*)
#   netlab.sh down [PREFIX]     stop every process of the lab and delete its namespaces;
#                               safe after a half-failed `up` and when nothing is up
#   netlab.sh status [PREFIX]   namespaces, addresses, routes, NAT types, impairment
#   netlab.sh env [PREFIX]      print the NETLAB_* variables again
#   netlab.sh impair PREFIX LINKS DIR LOSS DELAY [JITTER]
#                               impair WAN links: LINKS = all or a comma list of nat1,nat2,
#                               nat3; DIR = up (NAT -> internet), down (internet -> NAT)
#                               or both; LOSS in percent, DELAY and JITTER in ms, e.g.
#                               `impair P all both 20 50 10`; `impair P all both 0 0` clears.
#                               Returns once the wire has applied the new settings.
#
# PREFIX (default netlab-$$, so parallel runs never clash; pass the one `up` used to
# `down`) names the namespaces PREFIX-pub, PREFIX-nat1..3, PREFIX-a..c. State (PIDs,
# coturn config and log, wire log) is in ${TMPDIR:-/tmp}/PREFIX.
#
# Topology (IPv4 only; nothing is attached to the root namespace and no route leads
# out of the lab, so no packet can leave it):
#
#   a 10.0.1.2 --lan-- nat1 (cone)      203.0.113.11 -wire-+
#   b 10.0.2.2 --lan-- nat2 (cone)      203.0.113.12 -wire-+- br0 in pub 203.0.113.1:
#   c 10.0.3.2 --lan-- nat3 (symmetric) 203.0.113.13 -wire-+  coturn STUN/TURN udp+tcp
#                                                             :3478, TURN-TLS :5349
#
# cone      = nft `masquerade`: endpoint-independent mapping (the source port is kept),
#             address-and-port-dependent filtering (conntrack);
# symmetric = nft `masquerade fully-random`: a new random port per destination.
# Each NAT drops unsolicited inbound packets (`ct state new drop` on its WAN side): an
# accepted or ICMP-answered probe would create a conntrack entry that steals the port
# the host's own outbound packet maps to, breaking hole punching.
# pub routes every unknown destination into a dead-end veth pair ("sink"): coturn 4.6
# closes a whole allocation when a relayed sendto() fails with ENETUNREACH (e.g. to a
# peer's private host candidate), so such packets must vanish silently, as on the
# internet.
# WAN links: this kernel has no sch_netem, so each WAN link is a pair of TAP devices
# (nat wan <-> pub natN) joined by wire.py, a userspace netem (loss, delay, jitter per
# link and direction) running in the root namespace (it only holds the TAP fds).
#
# Env: PYTHON (default: the repo's .venv python, else python3) runs wire.py.
# Needs root, iproute2, nftables, coturn (turnserver), openssl.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
PUB_IP=203.0.113.1
TURN_PORT=3478
TURN_TLS_PORT=5349
TURN_USER=syncice
TURN_PASSWORD=netlab-password
TURN_REALM=netlab.test
NODES="pub nat1 nat2 nat3 a b c"

usage() {
  sed -n '2,17p' "$0" >&2
  exit 2
}

# alive PID: exists and is not a zombie (PID 1 reaps orphans late here).
alive() {
  local st
  st=$(sed -E 's/^.*\) //; s/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# wait_gone PID...: up to 3 s for the processes to exit, then SIGKILL.
end_pids() {
  local pid left
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 1 150); do
    left=""
    for pid in "$@"; do alive "$pid" && left="$left $pid"; done
    [ -z "$left" ] && return 0
    sleep 0.02
  done
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null || true
}

lab_env() {
  cat <<EOV
NETLAB_PREFIX=$P
NETLAB_DIR=$STATE
NETLAB_PUB_IP=$PUB_IP
NETLAB_A_IP=10.0.1.2
NETLAB_B_IP=10.0.2.2
NETLAB_C_IP=10.0.3.2
NETLAB_NAT1_IP=203.0.113.11
NETLAB_NAT2_IP=203.0.113.12
NETLAB_NAT3_IP=203.0.113.13
NETLAB_TURN_PORT=$TURN_PORT
NETLAB_TURN_TLS_PORT=$TURN_TLS_PORT
NETLAB_TURN_USER=$TURN_USER
NETLAB_TURN_PASSWORD=$TURN_PASSWORD
NETLAB_TURN_REALM=$TURN_REALM
NETLAB_TURN_CERT=$STATE/coturn/cert.pem
EOV
}

nat_rules() { # NODE cone|symmetric
  local masq=masquerade
  [ "$2" = symmetric ] && masq="masquerade fully-random"
  ip netns exec "$P-$1" nft -f - <<EON
table ip netlab {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan" oifname "wan" accept
    iifname "wan" oifname "lan" ct state established,related accept
  }
}
EON
}

start_coturn() {
  local d=$STATE/coturn
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/key.pem" -out "$d/cert.pem" -days 2 -subj "/CN=turn.netlab.test" \
    -addext "subjectAltName=IP:$PUB_IP" 2>/dev/null
  cat >"$d/turnserver.conf" <<EOC
listening-ip=$PUB_IP
relay-ip=$PUB_IP
listening-port=$TURN_PORT
tls-listening-port=$TURN_TLS_PORT
lt-cred-mech
user=$TURN_USER:$TURN_PASSWORD
realm=$TURN_REALM
fingerprint
cert=$d/cert.pem
pkey=$d/key.pem
no-multicast-peers
no-cli
no-rfc5780
no-dtls
userdb=$d/turndb
pidfile=$d/turnserver.pid
log-file=$d/turnserver.log
simple-log
verbose
EOC
  ip netns exec "$P-pub" turnserver -c "$d/turnserver.conf" >"$d/stdout.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
  local pid=$!
  for _ in $(seq 1 250); do
    alive "$pid" || break
    if ip netns exec "$P-pub" ss -Hlnu "src $PUB_IP:$TURN_PORT" | grep -q . &&
      ip netns exec "$P-pub" ss -Hlnt "src $PUB_IP:$TURN_PORT" | grep -q . &&
      ip netns exec "$P-pub" ss -Hlnt "src $PUB_IP:$TURN_TLS_PORT" | grep -q .; then
      return 0
    fi
    sleep 0.02
  done
  echo "netlab.sh: coturn did not start:" >&2
  tail -20 "$d/stdout.log" >&2 || true
  return 1
}

up() {
  if ip netns list | grep -q "^$P-pub\b"; then
    echo "netlab.sh: lab $P is already up (netlab.sh down $P first)" >&2
    return 1
  fi
  mkdir -p "$STATE"
  local n i host type
  for n in $NODES; do
    ip netns add "$P-$n"
    ip -n "$P-$n" link set lo up
    ip netns exec "$P-$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
      net.ipv6.conf.default.disable_ipv6=1
  done
  ip -n "$P-pub" link add br0 type bridge
  ip -n "$P-pub" addr add "$PUB_IP/24" dev br0
  ip -n "$P-pub" link set br0 up
  for i in 1 2 3; do
    host=$(echo "a b c" | cut -d' ' -f"$i")
    type=cone
    [ "$i" = 3 ] && type=symmetric
    ip -n "$P-nat$i" tuntap add dev wan mode tap
    ip -n "$P-pub" tuntap add dev "nat$i" mode tap
    ip -n "$P-pub" link set "nat$i" master br0 up
    ip -n "$P-nat$i" addr add "203.0.113.1$i/24" dev wan
    ip -n "$P-nat$i" link set wan up
    ip -n "$P-nat$i" link add lan type veth peer name eth0 netns "$P-$host"
    ip -n "$P-nat$i" addr add "10.0.$i.1/24" dev lan
    ip -n "$P-nat$i" link set lan up
    ip -n "$P-$host" addr add "10.0.$i.2/24" dev eth0
    ip -n "$P-$host" link set eth0 up
    ip -n "$P-$host" route add default via "10.0.$i.1"
    ip netns exec "$P-nat$i" sysctl -qw net.ipv4.ip_forward=1
    nat_rules "nat$i" "$type"
    echo "$type" >"$STATE/nat$i.type"
  done
  ip -n "$P-pub" link add sink0 type veth peer name sink1
  ip -n "$P-pub" link set sink0 arp off up
  ip -n "$P-pub" link set sink1 up
  ip -n "$P-pub" route add default dev sink0

  echo '{"generation": 0, "links": {}}' >"$STATE/impair.json"
  setsid "$PYTHON" "$HERE/wire.py" --config "$STATE/impair.json" \
    --applied "$STATE/wire.applied" \
    --link "nat1=$P-nat1:wan=$P-pub:nat1" --link "nat2=$P-nat2:wan=$P-pub:nat2" \
    --link "nat3=$P-nat3:wan=$P-pub:nat3" >"$STATE/wire.log" 2>&1 </dev/null &
  echo $! >"$STATE/wire.pid"
  for _ in $(seq 1 250); do
    grep -qs '^ready' "$STATE/wire.log" && break
    alive "$(<"$STATE/wire.pid")" || break
    sleep 0.02
  done
  grep -qs '^ready' "$STATE/wire.log" || {
    echo "netlab.sh: wire.py did not start:" >&2
    cat "$STATE/wire.log" >&2
    return 1
  }
  start_coturn
  lab_env >"$STATE/env"
  cat "$STATE/env"
}

down() {
  local n pids
  if [ -f "$STATE/wire.pid" ]; then end_pids "$(<"$STATE/wire.pid")"; fi
  for n in $NODES; do
    ip netns list | grep -q "^$P-$n\b" || continue
    # Everything running in a lab namespace was started for the lab: end it by PID.
    pids=$(ip netns pids "$P-$n" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || end_pids $pids
    ip netns del "$P-$n"
  done
  rm -rf "$STATE"
}

status() {
  local n
  if ! ip netns list | grep -q "^$P-"; then
    echo "lab $P is down"
    return 0
  fi
  for n in $NODES; do
    ip netns list | grep -q "^$P-$n\b" || { echo "== $P-$n missing"; continue; }
    echo "== $P-$n"
    ip -n "$P-$n" -br addr | grep -v '^lo' | sed 's/^/   /'
    ip -n "$P-$n" route | sed 's/^/   route: /'
    case $n in nat*) echo "   type: $(cat "$STATE/$n.type" 2>/dev/null)" ;; esac
    local pids
    pids=$(ip netns pids "$P-$n" 2>/dev/null | tr '\n' ' ')
    [ -z "$pids" ] || echo "   pids: $pids"
  done
  echo "wire: pid $(cat "$STATE/wire.pid" 2>/dev/null), impairment $(cat "$STATE/impair.json" 2>/dev/null)"
}

impair() { # LINKS DIR LOSS DELAY [JITTER]
  [ $# -ge 4 ] || usage
  [ -f "$STATE/impair.json" ] || {
    echo "netlab.sh: lab $P is not up" >&2
    return 1
  }
  local gen
  gen=$("$PYTHON" - "$STATE/impair.json" "$@" <<'EOP'
import json
import os
import sys

path, links, direction, loss, delay = sys.argv[1:6]
jitter = sys.argv[6] if len(sys.argv) > 6 else "0"
if direction not in ("up", "down", "both"):
    sys.exit("DIR must be up, down or both")
names = ["nat1", "nat2", "nat3"] if links == "all" else links.split(",")
if not set(names) <= {"nat1", "nat2", "nat3"}:
    sys.exit("LINKS must be all or a comma list of nat1, nat2, nat3")
with open(path) as f:
    cfg = json.load(f)
setting = {
    "loss": float(loss.rstrip("%")) / 100,
    "delay": float(delay.removesuffix("ms")) / 1000,
    "jitter": float(jitter.removesuffix("ms")) / 1000,
}
for name in names:
    for d in ("up", "down") if direction == "both" else (direction,):
        cfg["links"].setdefault(name, {})[d] = setting
cfg["generation"] += 1
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f)
os.replace(path + ".tmp", path)
print(cfg["generation"])
EOP
)
  for _ in $(seq 1 250); do
    [ "$(cat "$STATE/wire.applied" 2>/dev/null)" = "$gen" ] && return 0
    sleep 0.02
  done
  echo "netlab.sh: wire.py did not apply generation $gen" >&2
  return 1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up | down | status | env)
    P=${1:-netlab-$$}
    ;;
  impair)
    [ $# -ge 1 ] || usage
    P=$1
    shift
    ;;
  *) usage ;;
esac
case $P in *[!A-Za-z0-9_-]* | "") echo "netlab.sh: bad PREFIX '$P'" >&2; exit 2 ;; esac
STATE=${TMPDIR:-/tmp}/$P
case $cmd in
  up)
    # A failed `up` (set -e exits at the failing command) leaves nothing behind.
    trap 'rc=$?; [ "$rc" = 0 ] || down' EXIT
    up
    ;;
  down) down ;;
  status) status ;;
  env) lab_env ;;
  impair) impair "$@" ;;
esac
