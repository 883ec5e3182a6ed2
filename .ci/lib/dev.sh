# Sourced by the .ci scripts that drive a live `hookline dev`.
#
# start_dev BINARY WORK [ARGS...]: starts `BINARY dev` on port 0 with a fresh
# SQLite store in WORK, waits until it answers, and sets `base` (its URL) and
# `key` (the dev API key). Its stdout holds the key, so it stays in WORK
# (make it private) and is never printed; its log is WORK/stderr.
# stop_dev: stops it. Callers trap stop_dev (and remove WORK) on EXIT.

dev_pid=""

start_dev() {
    local binary="$1" work="$2"
    shift 2
    HOOKLINE_LOG="${HOOKLINE_LOG:-warn}" "$binary" dev --listen 127.0.0.1:0 --store "sqlite://$work/dev.db" "$@" \
        >"$work/stdout" 2>"$work/stderr" &
    dev_pid=$!
    base=""
    key=""
    for _ in $(seq 1 300); do
        if ! kill -0 "$dev_pid" 2>/dev/null; then
            echo "hookline dev exited early:" >&2
            cat "$work/stderr" >&2
            return 1
        fi
        base="$(sed -n 's|^hookline dev listening on \(http://[^ ]*\).*|\1|p' "$work/stdout")"
        key="$(sed -n 's|^API key (tenant dev): \(.*\)$|\1|p' "$work/stdout")"
        if [[ -n "$base" && -n "$key" ]] && dev_answers "$base"; then
            echo "hookline dev is up at $base"
            return 0
        fi
        sleep 0.1
    done
    echo "hookline dev did not start:" >&2
    cat "$work/stderr" >&2
    return 1
}

# Whether GET /healthz answers 200, with nothing but bash.
dev_answers() {
    local hostport="${1#http://}" reply=""
    exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" 2>/dev/null || return 1
    printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$hostport" >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3>&-
    [[ "$reply" == "HTTP/1."?" 200"* ]]
}

stop_dev() {
    if [[ -n "$dev_pid" ]]; then
        kill "$dev_pid" 2>/dev/null || true
        wait "$dev_pid" 2>/dev/null || true
        dev_pid=""
    fi
}

# Re-runs the calling script inside a network namespace of its own where
# only loopback exists (as root, or through an unprivileged user namespace).
# The script sees "--inside" as its first argument there.
enter_loopback_namespace() {
    local script="$1"
    command -v unshare >/dev/null && command -v ip >/dev/null || {
        echo "need unshare (util-linux) and ip (iproute2) to run the server without network" >&2
        exit 1
    }
    if [[ "$(id -u)" == 0 ]]; then
        exec unshare --net -- "$script" --inside
    else
        exec unshare --user --map-root-user --net -- "$script" --inside
    fi
}
