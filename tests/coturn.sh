#!/usr/bin/env bash
# A throw-away coturn (STUN + TURN over UDP, TCP and TLS) on loopback, for tests.
#
#   bash tests/coturn.sh start STATE_DIR   # prints `export TURN_...=...` lines
#   bash tests/coturn.sh stop STATE_DIR
#
# start installs nothing (tests/run-all.sh installs coturn). It writes a config
# and a fresh self-signed certificate into STATE_DIR (created if missing), runs
# `turnserver -c CONF` in the background, waits until its UDP, TCP and TLS
# listeners are up, and prints shell `export` lines for eval:
#   TURN_PID TURN_IP TURN_IP6 TURN_PORT TURN_TLS_PORT TURN_USER TURN_PASSWORD
#   TURN_REALM TURN_CERT TURN_LOG TURN_DIR
# TURN_PASSWORD, if set, is the password to use (else a random one), and
# TURN_EXTRA_CONF holds config lines added at the end.
# TURN_IP6 is ::1 when the host has IPv6 loopback, else empty. The server
# listens and relays on loopback only, and refuses every non-loopback peer, so
# no test can make it send anywhere else.
#
# stop kills the PID that start recorded in STATE_DIR/pid, and only that PID,
# then waits until it has exited. It leaves STATE_DIR (and the log) in place.
#
# Needs: turnserver (Debian package coturn), openssl, ss (iproute2), python3
# (PYTHON overrides it) to find free ports.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop STATE_DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$2
[ -d "$dir" ] && dir=$(cd "$dir" && pwd)

# alive PID: the process exists and is not a zombie. The server outlives this
# script, so PID 1 becomes its parent and reaps it only some time after it
# exits (~1.5 s on this kind of machine); `kill -0` alone would wait for it.
alive() {
  local state
  # /proc/PID/stat: "PID (COMM) STATE ...", and COMM may hold spaces.
  state=$(sed -E 's/^.*\) //; s/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# ours PID: the process is the turnserver that start ran with this config, so
# a PID reused by another process after ours exited is never signalled.
ours() {
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *turnserver\ -c\ "$dir/turnserver.conf"* ]]
}

stop() {
  local pid
  [ -f "$dir/pid" ] || {
    echo "coturn.sh: no $dir/pid: nothing to stop" >&2
    return 0
  }
  pid=$(<"$dir/pid")
  if alive "$pid" && ! ours "$pid"; then
    echo "coturn.sh: PID $pid is no longer our turnserver: left alone" >&2
  elif alive "$pid"; then
    kill -TERM "$pid" # coturn exits at once on SIGTERM
    for _ in $(seq 1 250); do # 5 s
      alive "$pid" || break
      sleep 0.02
    done
    if alive "$pid"; then
      echo "coturn.sh: turnserver $pid ignored SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/pid"
}

# free_ports: prints two ports free for both UDP and TCP on 127.0.0.1 and (if
# it can be bound at all) ::1, then "1" if ::1 can be bound, else "0". Ports come from the kernel's
# ephemeral range, so another process may take one before coturn binds it: the
# startup probe below then fails with the log, rather than a test hanging.
free_ports() {
  "${PYTHON:-python3}" - <<'EOF'
import socket

def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True

hosts = [(socket.AF_INET, "127.0.0.1")]
if ipv6_loopback():
    hosts.append((socket.AF_INET6, "::1"))

def free(port: int) -> bool:
    for family, host in hosts:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    return False
    return True

ports: list[int] = []
while len(ports) < 2:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if port not in ports and free(port):
        ports.append(port)
print(ports[0], ports[1], int(len(hosts) == 2))
EOF
}

# listening PROTO IP PORT: ss shows a listener (-u: bound UDP socket).
listening() {
  local host=$2
  [[ $host == *:* ]] && host="[$host]"
  ss -Hln"$1" "src $host:$3" | grep -q .
}

start() {
  local turnserver ip=127.0.0.1 ip6="" port tls_port has_ip6 password
  turnserver=$(command -v turnserver) || {
    echo "coturn.sh: turnserver not found (Debian: apt-get install coturn)" >&2
    return 2
  }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && alive "$(<"$dir/pid")"; then
    echo "coturn.sh: $dir already has a running server; stop it first" >&2
    return 1
  fi

  local ports
  ports=$(free_ports) || {
    echo "coturn.sh: could not pick free ports with ${PYTHON:-python3}" >&2
    return 1
  }
  read -r port tls_port has_ip6 <<<"$ports"
  [ "$has_ip6" = 1 ] && ip6=::1
  password=${TURN_PASSWORD:-$(openssl rand -hex 16)}

  # Self-signed EC P-256 certificate (about 10 ms), valid for every address a
  # test may connect to.
  local cert=$dir/turn_cert.pem pkey=$dir/turn_pkey.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$pkey" -out "$cert" -days 7 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" 2>/dev/null

  local conf=$dir/turnserver.conf
  {
    echo "listening-ip=$ip"
    echo "relay-ip=$ip"
    if [ -n "$ip6" ]; then
      echo "listening-ip=$ip6"
      echo "relay-ip=$ip6"
    fi
    # An IPv6 client gets an IPv6 relay (RFC 6156's default would be IPv4).
    echo "allocation-default-address-family=keep"
    echo "listening-port=$port"
    echo "tls-listening-port=$tls_port"
    echo "lt-cred-mech"
    echo "user=syncice:$password"
    echo "realm=syncice.test"
    echo "fingerprint"
    echo "cert=$cert"
    echo "pkey=$pkey"
    # coturn refuses loopback peers (403 Forbidden IP) unless told otherwise,
    # and then the relay could reach any address: deny everything that is not
    # loopback, so a test can only ever relay to 127.0.0.0/8 and ::1.
    echo "allow-loopback-peers"
    echo "denied-peer-ip=0.0.0.0-126.255.255.255"
    echo "denied-peer-ip=128.0.0.0-255.255.255.255"
    # coturn 4.6 compares IPv6 addresses byte by byte (an address is in a
    # range when each of its bytes lies between the same bytes of the ends),
    # so "::2-ffff:...:ffff" would let 2001:db8::1 through. These 16 ranges
    # cover every address but ::1 under that rule and under numeric order
    # alike: some byte 0-14 is non-zero (one range each), or only byte 15 is,
    # and it is 2 or more. coturn refuses :: by itself; a range ending in ::
    # would match every address.
    local i groups ipv6_max=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
    for i in $(seq 0 14); do
      groups=(0 0 0 0 0 0 0 0)
      groups[i / 2]=$((i % 2 ? 1 : 100)) # hex digits: byte i is 1
      echo "denied-peer-ip=$(IFS=:; echo "${groups[*]}")-$ipv6_max"
    done
    echo "denied-peer-ip=::2-::ff"
    echo "no-multicast-peers"
    echo "no-cli"     # else a telnet CLI on 127.0.0.1:5766, shared by all servers
    echo "no-rfc5780" # no second (alternate) address to answer CHANGE-REQUEST from
    # Defaults are under /var; -c keeps /etc/turnserver.conf out.
    echo "userdb=$dir/turndb"
    echo "pidfile=$dir/turnserver.pid"
    echo "log-file=$dir/turnserver.log"
    echo "simple-log" # the log file name gets no date suffix
    echo "verbose"
    # More lines from the caller (a test's second server, for instance).
    [ -z "${TURN_EXTRA_CONF:-}" ] || printf '%s\n' "$TURN_EXTRA_CONF"
  } >"$conf"

  # stdout must not be ours: `eval "$(coturn.sh start ...)"` would wait for EOF.
  "$turnserver" -c "$conf" >"$dir/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/pid"

  # Startup probe: all listeners up, within 5 s (usually ~0.1 s).
  local up=0 host hosts=("$ip")
  [ -n "$ip6" ] && hosts+=("$ip6")
  for _ in $(seq 1 250); do
    alive "$pid" || break
    up=1
    for host in "${hosts[@]}"; do
      if ! listening u "$host" "$port" || ! listening t "$host" "$port" ||
        ! listening t "$host" "$tls_port"; then
        up=0
      fi
    done
    [ "$up" = 1 ] && break
    sleep 0.02
  done
  if [ "$up" != 1 ]; then
    echo "coturn.sh: turnserver did not start; end of its logs:" >&2
    tail -n 30 "$dir/stdout.log" "$dir/turnserver.log" >&2 2>/dev/null || true
    stop
    return 1
  fi

  local name value
  for name in PID IP IP6 PORT TLS_PORT USER PASSWORD REALM CERT LOG DIR; do
    case $name in
      PID) value=$pid ;;
      IP) value=$ip ;;
      IP6) value=$ip6 ;;
      PORT) value=$port ;;
      TLS_PORT) value=$tls_port ;;
      USER) value=syncice ;;
      PASSWORD) value=$password ;;
      REALM) value=syncice.test ;;
      CERT) value=$cert ;;
      LOG) value=$dir/turnserver.log ;;
      DIR) value=$dir ;;
    esac
    printf 'export TURN_%s=%q\n' "$name" "$value"
  done
}

case $action in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
