#!/usr/bin/env bash
# Microsoft Graph beta SDK for Python compatibility test: drives the REAL
# entitlement-gateway binary with the unchanged PyPI package msgraph-beta-sdk
# (kiota-based), through tests/compat/msgraph_sdk_compat.py.
#
# It checks, over HTTP on a port the server picks itself, with the SDK's own
# request builders, models and ODataError: create (every property, only the
# required ones, caller-chosen id: idempotent and 409), get, and the errors 400,
# 401, 403 and 404 as the SDK raises them, list ($filter, $top, $count, $select,
# @odata.nextLink paging) and delete, the count (`.count.get`: .../$count with and
# without $filter, $search is a 400), filterByCurrentUser(on='target') with the
# tokens of two fresh users (each sees exactly its own assignments, with $top
# paging through @odata.nextLink, $count, $filter, $orderby and $select; on='createdBy'
# is a 400), and that an unknown query option is a 400 on every route.
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

# shellcheck source=tests/compat/common.sh
. "$ROOT/tests/compat/common.sh"

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

# --- 2. the binary, and the server on ports it picks --------------------------
find_binary
start_server msgraph
BASE_URL="http://$HTTP_ADDR/beta"
say "Graph base URL $BASE_URL"

# Tokens signed with the data dir's key (it exists once the server listens).
GRAPH_TOKEN="$("$BIN" token --data-dir "$DATA")"
GRAPH_READ_TOKEN="$("$BIN" token --data-dir "$DATA" --scope EntitlementManagement.Read.All)"
# Two users for filterByCurrentUser(on='target'): fresh object ids, which become
# the tokens' `oid` (and `sub`).
GRAPH_USER_A="$(</proc/sys/kernel/random/uuid)"
GRAPH_USER_B="$(</proc/sys/kernel/random/uuid)"
GRAPH_USER_A_TOKEN="$("$BIN" token --data-dir "$DATA" --subject "$GRAPH_USER_A")"
GRAPH_USER_B_TOKEN="$("$BIN" token --data-dir "$DATA" --subject "$GRAPH_USER_B")"

# --- 4. the checks ---------------------------------------------------------------------------
status=0
GRAPH_BASE_URL="$BASE_URL" GRAPH_TOKEN="$GRAPH_TOKEN" GRAPH_READ_TOKEN="$GRAPH_READ_TOKEN" \
    GRAPH_USER_A="$GRAPH_USER_A" GRAPH_USER_A_TOKEN="$GRAPH_USER_A_TOKEN" \
    GRAPH_USER_B="$GRAPH_USER_B" GRAPH_USER_B_TOKEN="$GRAPH_USER_B_TOKEN" \
    "$PY" "$ROOT/tests/compat/msgraph_sdk_compat.py" "$@" || status=$?

if ((status != 0)); then
    echo
    echo "--- server log (last 60 lines)"
    tail -n 60 "$LOG"
fi
exit "$status"
