#!/usr/bin/env bash
# Microsoft Graph JavaScript client compatibility test: drives the REAL
# entitlement-gateway binary, over https, with the unchanged npm package
# @microsoft/microsoft-graph-client (pinned in tests/compat/graph-js/package.json and
# package-lock.json), through tests/compat/graph_js_compat.mjs on Node (20 or newer:
# its global fetch is what the client uses; no polyfill).
#
# The client attaches the Authorization header only to https URLs (of Graph hosts or
# of the `customHosts` it is given), so the server runs with native TLS: a throwaway
# CA and a server certificate for 127.0.0.1/localhost are made with openssl, the server
# is started with --tls-cert/--tls-key (given as ENTITLEMENT_GATEWAY_TLS_CERT/_KEY) on
# ports it picks itself, and Node trusts the CA through NODE_EXTRA_CA_CERTS.
#
# It checks, with the client's own API (Client.init with an authProvider, baseUrl
# https://127.0.0.1:PORT/, defaultVersion "beta", customHosts): create (the seed body
# tests/fixtures/seed/request.json; 201, https Location and @odata.context, the token
# sent), get by id (also with .select), list with .filter, .top, .count(true) and
# .select, the $count route, PageIterator over every page of a small .top (each id seen
# once, pages fetched at the https @odata.nextLink with the token), GraphError fields
# (statusCode, code, message, requestId, body) on 400 (bad filter), 401 (a wrong token,
# which the client is seen to send, and no token without customHosts), 403 (read-only
# token) and 404 (unknown GUID), delete (then 404), that plain http to the TLS port
# gets no HTTP answer, and that a Node without the CA refuses the certificate.
#
# Run it from anywhere:
#   tests/compat/graph_js_compat.sh [--verbose]
# (arguments are passed to the Node script).
# Environment:
#   ENTITLEMENT_GATEWAY_BIN   test this binary instead of running `cargo build`
#   CARGO_TARGET_DIR          where `cargo build` puts the binary (default: target/)
#   XDG_CACHE_HOME            the client is installed (`npm ci`) in
#                             ${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-gateway/graph-js
#                             (once; reinstalled only when the pinned package.json or
#                             package-lock.json change)
#
# Every check prints PASS or FAIL; the last line is "N passed, N failed" and the
# exit status is the Node script's: non-zero when any check failed (2 when the
# setup did).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIN_DIR="$ROOT/tests/compat/graph-js"  # package.json + package-lock.json: the exact versions
CLIENT_PACKAGE="@microsoft/microsoft-graph-client"
JS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-gateway/graph-js"
STARTUP_TIMEOUT=30  # seconds to wait for the "listening" log line
NODE_MAJOR_MIN=20

# shellcheck source=tests/compat/common.sh
. "$ROOT/tests/compat/common.sh"

# common.sh's cleanup (stop the server, remove WORK) also removes the certificates.
TLS_DIR=""
eval "common_$(declare -f cleanup)"
cleanup() {
    local status=$?
    set +e
    [[ -z "$TLS_DIR" ]] || rm -rf "$TLS_DIR"
    (exit "$status")
    common_cleanup  # exits with $status
}
trap cleanup EXIT

# --- 1. Node, and the client installed outside the repo ----------------------------
command -v node >/dev/null 2>&1 || die "node is not installed (Node $NODE_MAJOR_MIN or newer is needed)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= NODE_MAJOR_MIN)) || die "Node $(node --version) is too old: $NODE_MAJOR_MIN or newer is needed (global fetch)"

# The pinned version, from the lock file (what `npm ci` installs).
PINNED="$(node -p 'require(process.argv[1]).packages["node_modules/" + process.argv[2]].version' \
    "$PIN_DIR/package-lock.json" "$CLIENT_PACKAGE")"
installed_version() {
    node -p 'require(process.argv[1]).version' \
        "$JS_DIR/node_modules/$CLIENT_PACKAGE/package.json" 2>/dev/null || true
}
if [[ "$(installed_version)" == "$PINNED" ]] &&
    cmp -s "$PIN_DIR/package.json" "$JS_DIR/package.json" &&
    cmp -s "$PIN_DIR/package-lock.json" "$JS_DIR/package-lock.json"; then
    say "reusing $CLIENT_PACKAGE@$PINNED in $JS_DIR"
else
    say "installing $CLIENT_PACKAGE@$PINNED into $JS_DIR (npm ci)"
    mkdir -p "$JS_DIR"
    cp "$PIN_DIR/package.json" "$PIN_DIR/package-lock.json" "$JS_DIR/"
    (cd "$JS_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
    [[ "$(installed_version)" == "$PINNED" ]] || die "npm ci did not install $CLIENT_PACKAGE@$PINNED into $JS_DIR"
fi
say "using $CLIENT_PACKAGE@$PINNED on Node $(node --version)"

# --- 2. a throwaway CA, and a certificate for 127.0.0.1 and localhost ---------------
TLS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/entitlement-gateway-graph-js-tls.XXXXXX")"
make_test_certificates "$TLS_DIR"

# --- 3. the binary, and the server (TLS) on ports it picks ------------------------------
find_binary
"$BIN" serve --help | grep -q -- '--tls-cert' || die "$BIN serve has no --tls-cert"
ENTITLEMENT_GATEWAY_TLS_CERT="$TLS_DIR/server.pem" ENTITLEMENT_GATEWAY_TLS_KEY="$TLS_DIR/server.key" \
    start_server graph-js
BASE_URL="https://$HTTP_ADDR/"
say "Graph base URL ${BASE_URL}beta"

# Tokens signed with the data dir's key (it exists once the server listens).
GRAPH_TOKEN="$("$BIN" token --data-dir "$DATA")"
GRAPH_READ_TOKEN="$("$BIN" token --data-dir "$DATA" --scope EntitlementManagement.Read.All)"

# --- 4. the checks ---------------------------------------------------------------------------
status=0
NODE_EXTRA_CA_CERTS="$TLS_DIR/ca.pem" GRAPH_JS_DIR="$JS_DIR" GRAPH_BASE_URL="$BASE_URL" \
    GRAPH_TOKEN="$GRAPH_TOKEN" GRAPH_READ_TOKEN="$GRAPH_READ_TOKEN" \
    GRAPH_SEED="$ROOT/tests/fixtures/seed/request.json" \
    node "$ROOT/tests/compat/graph_js_compat.mjs" "$@" || status=$?

if ((status != 0)); then
    echo
    echo "--- server log (last 60 lines)"
    tail -n 60 "$LOG"
fi
exit "$status"
