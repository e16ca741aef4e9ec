#!/usr/bin/env bash
# The test command of README.md ("bash tests/run-all.sh"), which .ci/run calls.
#
# On a fresh Debian machine it installs everything the tests need (a .venv with
# the package and its test, fuzz and docs extras), then runs every check: ruff,
# ruff format, mypy, pytest over tests/ and fuzz/ under coverage, the coverage
# gates and the Sphinx build. Each check runs even when an earlier one failed;
# the script exits non-zero if any did, and ends with a one-line summary.
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
# Third-party servers the tests talk to, on loopback only (coturn comes here
# later: apt-get install, start, export its address for the tests). Every
# process started here appends its PID to SERVICE_PIDS; stop_services, run on
# any exit, stops exactly those PIDs and nothing else.
SERVICE_PIDS=()

start_services() {
  : # none yet
}

stop_services() {
  local pid
  for pid in ${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in ${SERVICE_PIDS[@]+"${SERVICE_PIDS[@]}"}; do
    wait "$pid" 2>/dev/null || true
  done
  SERVICE_PIDS=()
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
pytest_run() {
  local rc=0
  "$py" -m coverage erase || return
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
    --include=syncice/stun.py,syncice/candidate.py
}

check "ruff check" "$py" -m ruff check .
check "ruff format" "$py" -m ruff format --check .
check "mypy" "$py" -m mypy
check "pytest (tests, fuzz) under coverage" pytest_run
check "coverage" coverage_gate
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
