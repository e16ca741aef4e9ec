#!/usr/bin/env bash
# The test command of README.md ("bash tests/run-all.sh"), which .ci/run calls.
#
# On a fresh Debian machine it installs everything the tests need (a .venv with
# the package and its test, fuzz and docs extras, and coturn, which it starts on
# loopback), then runs every check: ruff, ruff format, mypy, pytest over tests/
# and fuzz/ under coverage, the coverage gates and the Sphinx build. Each check
# runs even when an earlier one failed; the script exits non-zero if any did,
# and ends with a one-line summary.
#
# Environment: PYTHON (default python3) makes the venv; HYPOTHESIS_PROFILE
# (default ci) picks the Hypothesis profile that conftest.py registers; CI=true
# turns a test's missing component into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
passed=()
failed=()

banner() { printf '\n=== %s ===\n' "$*"; }

# check LABEL COMMAND...: run one check and record its outcome.
check() {
  local label=$1 rc=0 t0=$SECONDS
  shift
  banner "$label"
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    passed+=("$label")
    printf -- '--- %s: ok (%ds)\n' "$label" $((SECONDS - t0))
  else
    failed+=("$label")
    printf -- '--- %s: FAILED, exit status %d (%ds)\n' "$label" "$rc" $((SECONDS - t0))
  fi
}

# --- services -----------------------------------------------------------------
# Third-party servers the tests talk to, on loopback only. Every process started
# here appends its PID to SERVICE_PIDS, and its state directory (config, logs)
# to SERVICE_DIRS; stop_services, run on any exit, stops exactly those PIDs,
# waits until they have exited, and removes those directories.
SERVICE_PIDS=()
SERVICE_DIRS=()

# have_libnice: Debian's python3 can load libnice's GObject bindings.
have_libnice() {
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c \
    'import gi; gi.require_version("Nice", "0.1"); from gi.repository import Nice' \
    >/dev/null 2>&1
}

# coturn (STUN and TURN over UDP, TCP and TLS): tests/coturn.sh writes its
# config and prints `export TURN_...` lines, which tests/conftest.py reads. When
# it cannot run, the TURN_* variables stay unset: the coturn tests then skip,
# or fail under CI.
start_coturn() {
  local dir env
  # Only the server started here: none of the caller's TURN_* leaks into pytest.
  unset TURN_PID TURN_IP TURN_IP6 TURN_PORT TURN_TLS_PORT TURN_USER \
    TURN_PASSWORD TURN_REALM TURN_CERT TURN_LOG TURN_DIR
  # nftables makes the NATs of tests/test_srflx_coturn.py and tests/netlab/
  # (in namespaces); libnice, driven by Debian's /usr/bin/python3 through
  # python3-gi, is the interop peer of tests/interop/ and tests/netlab/.
  if ! command -v turnserver >/dev/null || ! command -v nft >/dev/null ||
    ! have_libnice; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
          coturn nftables python3-gi gir1.2-nice-0.1 libnice10; }; then
        echo "run-all: apt-get install coturn nftables libnice failed:" \
          "their tests will skip (fail under CI)" >&2
        return 0
      fi
    else
      echo "run-all: no turnserver, and not root with apt-get to install" \
        "coturn: coturn tests will skip (fail under CI)" >&2
      return 0
    fi
  fi
  dir=$(mktemp -d -t syncice-coturn.XXXXXX)
  SERVICE_DIRS+=("$dir")
  if ! env=$(bash tests/coturn.sh start "$dir"); then
    echo "run-all: coturn did not start: coturn tests will skip" \
      "(fail under CI)" >&2
    return 0
  fi
  eval "$env" # exports TURN_PID, TURN_IP, ... for pytest
  SERVICE_PIDS+=("$TURN_PID")
  echo "coturn $TURN_PID on $TURN_IP${TURN_IP6:+ and $TURN_IP6}," \
    "port $TURN_PORT, TLS $TURN_TLS_PORT"
}

# The real peers of tests/interop/ besides libnice: Debian's Chromium (driven
# by playwright, a test extra; never `playwright install`: the tests use
# /usr/bin/chromium), and werift-ice for node (tests/interop/werift/, from its
# package-lock.json). When one cannot be installed its tests skip, or fail
# under CI.
install_peers() {
  if ! command -v chromium >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      local packages=(chromium)
      command -v npm >/dev/null || packages+=(nodejs npm)
      if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; }; then
        echo "run-all: apt-get install ${packages[*]} failed: the Chromium" \
          "and werift tests will skip (fail under CI)" >&2
      fi
    else
      echo "run-all: no chromium or npm, and not root with apt-get: the" \
        "Chromium and werift tests will skip (fail under CI)" >&2
    fi
  fi
  if command -v npm >/dev/null; then
    (cd tests/interop/werift && npm ci --no-audit --no-fund --loglevel=error) ||
      echo "run-all: npm ci in tests/interop/werift failed: the werift" \
        "tests will skip (fail under CI)" >&2
  fi
}

# aioice's and aiortc's own test suites (tests/suites/): their sdists, which
# carry the tests (aiortc itself is a test extra).
fetch_suites() {
  export SYNCICE_SUITES_DIR="${SYNCICE_SUITES_DIR:-/tmp/syncice-suites}"
  mkdir -p "$SYNCICE_SUITES_DIR"
  "$py" -m pip download -q --disable-pip-version-check aioice==0.13.0 \
    aiortc==1.16.0 --no-binary :all: --no-deps -d "$SYNCICE_SUITES_DIR" ||
    echo "run-all: the aioice and aiortc sdists could not be fetched: their" \
      "suites will skip (fail under CI)" >&2
}

start_services() {
  banner "services"
  start_coturn
  install_peers
  fetch_suites
}

# gone PID: the process has exited. `wait` works for children only; a server
# whose starter script has exited is PID 1's child, and PID 1 may reap it some
# time later, so a zombie counts as gone.
gone() {
  local state
  # /proc/PID/stat: "PID (COMM) STATE ...", and COMM may hold spaces.
  state=$(sed -E 's/^.*\) //; s/ .*//' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$state" ] || [ "$state" = Z ]
}

stop_services() {
  local pid dir
  for pid in ${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in ${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}; do
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 1 250); do # 5 s
      gone "$pid" && break
      sleep 0.02
    done
    gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
  done
  for dir in ${SERVICE_DIRS[@]+"${SERVICE_DIRS[@]}"}; do
    rm -rf "$dir"
  done
  SERVICE_PIDS=()
  SERVICE_DIRS=()
}
trap stop_services EXIT

# --- install ------------------------------------------------------------------
banner "install into .venv"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq
      apt-get install -y -qq python3-venv
    else
      echo "run-all: $python has no venv module; install python3-venv" >&2
      exit 1
    fi
  fi
  "$python" -m venv .venv
fi
py=.venv/bin/python
"$py" -m pip install -q --disable-pip-version-check -e '.[test,fuzz,docs]'
"$py" --version
echo "CI=${CI:-} HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}"

start_services

# --- checks -------------------------------------------------------------------
# Functions run by check() run with errexit off (they are on the left of ||),
# so each returns its first failure itself.
# The interop matrix (tests/interop/) and the NAT lab (tests/netlab/) append
# one JSON line per run here; the "interop report" check turns them into the
# tables of docs/interop.rst (written to docs/_build/interop.rst).
results=docs/_build/interop-results.jsonl

pytest_run() {
  local rc=0
  "$py" -m coverage erase || return
  mkdir -p docs/_build && : >"$results" || return
  SYNCICE_INTEROP_RESULTS=$PWD/$results \
    HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci} \
    "$py" -bb -m coverage run -m pytest tests fuzz || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "run-all: pytest collected no tests, which is a failure here" >&2
  fi
  return "$rc"
}

coverage_gate() {
  "$py" -m coverage report || return
  echo
  echo "Gate: 100% line and branch coverage for the sans-IO modules"
  "$py" -m coverage report --fail-under=100 \
    --include=syncice/stun.py,syncice/candidate.py,syncice/_demux.py,syncice/_gather.py,syncice/exceptions.py,syncice/events.py,syncice/description.py || return
  echo
  echo "Gate: 100% for the ICE agent from its layer-1 tests alone (no sockets)"
  "$py" -m coverage report --fail-under=100 \
    --contexts='^$|tests\.test_ice_agent|tests\.test_ice_early_checks|tests\.test_ice_turn|tests\.test_transaction|tests\.test_ice_state_machine|tests\.test_ice_failures|tests\.test_ice_config|tests\.test_ice_states|tests\.test_ice_patience|tests\.test_ice_lite|tests\.test_ice_restart|tests\.test_ice_tcp' \
    --include=syncice/ice.py,syncice/_checklist.py,syncice/_transaction.py,syncice/_checks.py,syncice/_consent.py,syncice/_gathering.py,syncice/_ice_config.py,syncice/_ice_failure.py,syncice/_ice_log.py,syncice/_ice_states.py,syncice/_nomination.py,syncice/_relays.py,syncice/_agent_relays.py,syncice/_lite.py,syncice/_restart.py || return
  "$py" -m coverage report --fail-under=100 \
    --contexts='^$|tests\.test_turn\.' \
    --include=syncice/turn.py || return
  "$py" -m coverage report --fail-under=100 \
    --contexts='^$|tests\.test_mdns\.' \
    --include=syncice/mdns.py || return
  echo
  echo "Gate: 90% for the worker, the facades and the sockets (OS-specific paths)"
  "$py" -m coverage report --fail-under=90 \
    --include=syncice/_worker.py,syncice/connection.py,syncice/_clock.py,syncice/_stream.py,syncice/_mdns_socket.py,syncice/_extensions.py,syncice/asyncio/*.py,syncice/_describe.py,syncice/_aio_bridge.py,syncice/_facade.py,syncice/_data_path.py,syncice/_inbox.py,syncice/_mailbox.py,syncice/_batch.py,syncice/_lifecycle.py,syncice/_session.py,syncice/_sockets.py
}

check "ruff check" "$py" -m ruff check .
check "ruff format" "$py" -m ruff format --check .
check "mypy" "$py" -m mypy
check "pytest (tests, fuzz) under coverage" pytest_run
check "coverage" coverage_gate
interop_report() {
  [ -s "$results" ] || {
    echo "run-all: no interop or NAT lab results were recorded" >&2
    return 1
  }
  "$py" docs/gen_interop.py "$results" --where "run-all.sh on $(uname -n)" \
    --show-failures -o docs/_build/interop.rst || return
  echo "$(wc -l <"$results") runs; tables in docs/_build/interop.rst" \
    "(copy over docs/interop.rst to publish them)"
}

check "interop report" interop_report
check "sphinx" "$py" -m sphinx -E -q -W --keep-going -b html docs docs/_build/html

# --- summary ------------------------------------------------------------------
elapsed=$((SECONDS - started))
banner "summary"
if [ "${#failed[@]}" -eq 0 ]; then
  echo "run-all: all ${#passed[@]} checks passed in ${elapsed}s"
else
  printf -v names '%s, ' "${failed[@]}"
  echo "run-all: ${#failed[@]} of $((${#passed[@]} + ${#failed[@]})) checks FAILED" \
    "in ${elapsed}s: ${names%, }"
  exit 1
fi
