#!/usr/bin/env bash
# Microsoft Graph beta SDK for Python compatibility test: drives the REAL
# entitlement-gateway binary with the unchanged PyPI package msgraph-beta-sdk
# (kiota-based), through tests/compat/msgraph_sdk_compat.py.
#
# It checks, over HTTP on a port the server picks itself, with the SDK's own
# request builders, models and ODataError: create (every property, only the
# required ones, caller-chosen id: idempotent and 409), get, and the errors 400,
# 401, 403 and 404 as the SDK raises them, list ($filter, $top, $count, $select,
# @odata.nextLink paging) and delete.
#
# Run it from anywhere:
#   tests/compat/msgraph_sdk_compat.sh [--verbose]
# (arguments are passed to the Python script).
# Environment:
#   ENTITLEMENT_GATEWAY_BIN   test this binary instead of running `cargo build`
#   CARGO_TARGET_DIR          where `cargo build` puts the binary (default: target/)
#   XDG_CACHE_HOME            the SDK's venv lives in
#                             ${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-gateway/venv-msgraph
#                             (created once, reused while `import msgraph_beta` works)
#
# Every check prints PASS or FAIL; the last line is "N passed, N failed" and the
# exit status is the Python script's: non-zero when any check failed (2 when the
# setup did).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SDK_PACKAGE="msgraph-beta-sdk"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-gateway/venv-msgraph"
PY="$VENV/bin/python"
STARTUP_TIMEOUT=30  # seconds to wait for the "listening" log line

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# --- 1. the SDK, in a venv outside the repo ----------------------------------------
if [[ -x "$PY" ]] && "$PY" -c 'import msgraph_beta' >/dev/null 2>&1; then
    say "reusing $SDK_PACKAGE in $VENV"
else
    say "installing $SDK_PACKAGE into $VENV (takes a minute or two the first time)"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SDK_PACKAGE"
    "$PY" -c 'import msgraph_beta' || die "msgraph_beta does not import after installing $SDK_PACKAGE"
fi
say "using $SDK_PACKAGE $("$PY" -c 'import msgraph_beta; print(msgraph_beta.__version__)')"

# --- 2. the binary --------------------------------------------------------------------
if [[ -n "${ENTITLEMENT_GATEWAY_BIN:-}" ]]; then
    BIN="$ENTITLEMENT_GATEWAY_BIN"
    [[ -x "$BIN" ]] || die "ENTITLEMENT_GATEWAY_BIN=$BIN is not an executable file"
else
    say "cargo build"
    (cd "$ROOT" && cargo build)
    target_dir="${CARGO_TARGET_DIR:-target}"
    [[ "$target_dir" == /* ]] || target_dir="$ROOT/$target_dir"  # cargo reads it relative to the cwd
    BIN="$target_dir/debug/entitlement-gateway"
    [[ -x "$BIN" ]] || die "cargo build did not produce $BIN"
fi
say "testing $BIN"

# --- 3. the server, on ports it picks, with a fresh data dir ----------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/entitlement-gateway-msgraph.XXXXXX")"
DATA="$WORK/data"
LOG="$WORK/server.log"
SERVER_PID=""

cleanup() {
    local status=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # It drains and exits within its shutdown timeout; don't wait for long.
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Whether process $1 is still running (a zombie that was not reaped yet is not).
running() {
    local state
    state="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# RUST_LOG is unset so the "listening" line is logged (at INFO); with stdout not a
# terminal the log is plain text.
say "starting the server (data dir $DATA)"
env -u RUST_LOG "$BIN" serve --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --data-dir "$DATA" \
    >"$LOG" 2>&1 &
SERVER_PID=$!

# Wait for the "listening" line, reading the log line by line as it grows (each
# poll reads only the complete lines not read before: `read` fails on a last line
# that has no newline yet, so it is read again, whole, on the next poll), and take
# the HTTP address off it.
HTTP_ADDR=""
lines_read=0
deadline=$((SECONDS + STARTUP_TIMEOUT))
while :; do
    while IFS= read -r line; do
        lines_read=$((lines_read + 1))
        if [[ "$line" == *" listening "* && "$line" =~ http\.addr=([^[:space:]]+) ]]; then
            HTTP_ADDR="${BASH_REMATCH[1]}"
            break
        fi
    done < <(tail -n "+$((lines_read + 1))" "$LOG")
    [[ -z "$HTTP_ADDR" ]] || break
    if ! running "$SERVER_PID"; then
        cat "$LOG" >&2
        die "the server exited before it was listening"
    elif ((SECONDS >= deadline)); then
        cat "$LOG" >&2
        die "no 'listening' line from the server within ${STARTUP_TIMEOUT}s"
    fi
    sleep 0.1
done
BASE_URL="http://$HTTP_ADDR/beta"
say "Graph base URL $BASE_URL"

# Tokens signed with the data dir's key (it exists once the server listens).
GRAPH_TOKEN="$("$BIN" token --data-dir "$DATA")"
GRAPH_READ_TOKEN="$("$BIN" token --data-dir "$DATA" --scope EntitlementManagement.Read.All)"

# --- 4. the checks ---------------------------------------------------------------------------
status=0
GRAPH_BASE_URL="$BASE_URL" GRAPH_TOKEN="$GRAPH_TOKEN" GRAPH_READ_TOKEN="$GRAPH_READ_TOKEN" \
    "$PY" "$ROOT/tests/compat/msgraph_sdk_compat.py" "$@" || status=$?

if ((status != 0)); then
    echo
    echo "--- server log (last 60 lines)"
    tail -n 60 "$LOG"
fi
exit "$status"
