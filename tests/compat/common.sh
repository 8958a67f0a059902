# Shared by the compatibility scripts (sourced, not run): finding or building the
# binary, and starting it on ports it picks with a fresh data dir.
#
# After `start_server NAME`: BIN, WORK, DATA, LOG, SERVER_PID, HTTP_ADDR and
# GRPC_ADDR are set, and the server is stopped and WORK removed when the script
# exits. Needs ROOT (the repository) and STARTUP_TIMEOUT (seconds).

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# The binary to test: $ENTITLEMENT_GATEWAY_BIN, or a fresh `cargo build`.
find_binary() {
    if [[ -n "${ENTITLEMENT_GATEWAY_BIN:-}" ]]; then
        BIN="$ENTITLEMENT_GATEWAY_BIN"
        [[ -x "$BIN" ]] || die "ENTITLEMENT_GATEWAY_BIN=$BIN is not an executable file"
    else
        say "cargo build"
        (cd "$ROOT" && cargo build)
        local target_dir="${CARGO_TARGET_DIR:-target}"
        [[ "$target_dir" == /* ]] || target_dir="$ROOT/$target_dir"  # cargo reads it relative to the cwd
        BIN="$target_dir/debug/entitlement-gateway"
        [[ -x "$BIN" ]] || die "cargo build did not produce $BIN"
    fi
    say "testing $BIN"
}

# Whether process $1 is still running (a zombie that was not reaped yet is not).
running() {
    local state
    state="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

cleanup() {
    local status=$?
    if [[ -n "${SERVER_PID:-}" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # It drains and exits within its shutdown timeout; don't wait for long.
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "${WORK:-}"
    exit "$status"
}

# Starts `serve` on 127.0.0.1 port 0 with a fresh data dir and waits for its
# "listening" line (the real signal, not a fixed sleep).
start_server() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/entitlement-gateway-$1.XXXXXX")"
    DATA="$WORK/data"
    LOG="$WORK/server.log"
    SERVER_PID=""
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # RUST_LOG is unset so the "listening" line is logged (at INFO); with stdout
    # not a terminal the log is plain text.
    say "starting the server (data dir $DATA)"
    env -u RUST_LOG "$BIN" serve --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --data-dir "$DATA" \
        >"$LOG" 2>&1 &
    SERVER_PID=$!

    # Each poll reads only the complete lines not read before: `read` fails on a
    # last line that has no newline yet, so it is read again, whole, next time.
    HTTP_ADDR=""
    GRPC_ADDR=""
    local lines_read=0 line
    local deadline=$((SECONDS + STARTUP_TIMEOUT))
    while :; do
        while IFS= read -r line; do
            lines_read=$((lines_read + 1))
            if [[ "$line" == *" listening "* ]]; then
                [[ "$line" =~ http\.addr=([^[:space:]]+) ]] && HTTP_ADDR="${BASH_REMATCH[1]}"
                [[ "$line" =~ grpc\.addr=([^[:space:]]+) ]] && GRPC_ADDR="${BASH_REMATCH[1]}"
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
}

# make_test_certificates DIR: a throwaway CA (DIR/ca.pem) and a server certificate for
# 127.0.0.1 and localhost signed by it (DIR/server.pem, DIR/server.key), with openssl.
make_test_certificates() {
    local dir="$1"
    say "making a test CA and a server certificate in $dir"
    (
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=entitlement-gateway compatibility test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
            -keyout server.key -out server.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
        openssl verify -CAfile ca.pem server.pem
    ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl could not make the certificates"; }
}
