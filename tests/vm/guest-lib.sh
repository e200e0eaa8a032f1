# shellcheck shell=bash
# Helpers for guest scripts that drive the real client (sstpc 1.0.18 + pppd 2.4.9) in the VM:
# sourced, not run, by tests/tests/gateway_sstpc/guest.sh and tests/tests/real_node/guest.sh (the
# Rust test writes this file beside the script and passes its path as GUEST_LIB).
#
# Needs OUT (the shared results directory) and the VM_* variables tests/vm/run exports; `rec`
# appends key=value lines to $OUT/results. Call guest_setup once before the first call.
results=$OUT/results
: >"$results"
rec() { echo "$1=$2" >>"$results"; echo "guest: $1=$2" >&2; }

guest_setup() {
    # sstpc starts /usr/sbin/pppd itself and does not report its exit status. /usr is a
    # copy-on-write overlay in the guest, so put a wrapper there that records it. sstpc sends SIGTERM
    # to its pppd when the call ends; the wrapper passes it on and still records pppd's status.
    mv /usr/sbin/pppd /usr/sbin/pppd.real
    cat >/usr/sbin/pppd <<'WRAP'
#!/bin/bash
# Background jobs get /dev/null as stdin unless told otherwise; pppd needs the pty there.
/usr/sbin/pppd.real "$@" 0<&0 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM HUP INT
while true; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
done
echo "$rc" >/run/pppd.rc
exit "$rc"
WRAP
    chmod +x /usr/sbin/pppd

    # Every call runs over TLS 1.3 (the gateway's default and sstpc's). sstpc 1.0.18 never calls
    # SSL_connect: the handshake runs inside the SSL_write of its HTTP request, and it registers the
    # read for the HTTP 200 only when that write goes asynchronous (sstp_http_handshake ends in a
    # tail call to sstp_stream_send; only sstp_http_send_complete calls sstp_stream_setrecv). If
    # every server flight is already in the socket when OpenSSL reads after writing (TLS 1.3: the
    # first flight; TLS 1.2: the second as well), the handshake completes in that one call, nothing
    # is registered and sstpc exits "The event loop terminated unsuccessfully" (gateway/README.md,
    # Troubleshooting). That needs a round trip shorter than the client's own pause between write
    # and read, as here (slirp to the host's loopback, an emulated and, on a busy host, descheduled
    # CPU); a real network's round trip is far longer. Give the guest's egress such a latency so the
    # calls test the gateway rather than that race.
    if ! tc qdisc add dev "$VM_NIC" root netem delay 10ms; then
        echo "guest: cannot add the netem delay on $VM_NIC" >&2
        exit 1
    fi
}

# And since a vCPU descheduled for longer than that can still lose it, recognise exactly that
# failure (the message, with no certificate verdict, no HTTP failure and no SSTP packet sent:
# sstpc never got past its HTTP request, so the gateway never saw SSTP) and run the call again,
# at most 3 times; every lost race is recorded as NAME.races.
race_lost() {
    local log
    log=$(tr -d '\000' <"$1")
    grep -aq "The event loop terminated unsuccessfully" <<<"$log" &&
        ! grep -aq "SSTP CRTL PKT" <<<"$log" &&
        ! grep -aq "verification failed" <<<"$log" &&
        ! grep -aq "HTTP handshake with server failed" <<<"$log"
}

MSCHAP_ONLY="refuse-pap refuse-chap refuse-mschap refuse-eap"
PAP_ONLY="refuse-chap refuse-mschap refuse-mschap-v2 refuse-eap"
call_pid=""

# start_call NAME PORT CA USER PASSWORD AUTH_OPTS: starts sstpc (which starts pppd) in the background.
# CALL_HOST (default the host's address) is the server name given to sstpc, CALL_OPTS further
# sstpc options. $OUT/NAME.sstpc.log is the latest attempt's log; earlier ones move to
# $OUT/NAME.sstpc.earlier.log.
start_call() {
    local name=$1 port=$2 ca=$3 user=$4 password=$5 auth=$6 host=${CALL_HOST:-$VM_HOST_IP}
    # The previous call's ppp0 must be gone, or wait_up would take it for this call's.
    for _ in $(seq 50); do ip link show ppp0 >/dev/null 2>&1 || break; sleep 0.1; done
    rm -f /run/pppd.rc
    local log=$OUT/$name.sstpc.log
    [[ -e $log ]] && cat "$log" >>"$OUT/$name.sstpc.earlier.log"
    # shellcheck disable=SC2086  # auth options and CALL_OPTS are words
    sstpc --log-stderr --log-level 4 ${CALL_OPTS:-} --ca-cert "$ca" --user "$user" --password "$password" \
        "$host:$port" \
        noauth nodefaultroute $auth nobsdcomp nodeflate novj debug logfile "$OUT/$name.pppd.log" \
        >"$log" 2>&1 &
    call_pid=$!
}

# wait_up: prints ppp0's address once it has one; fails if sstpc ends first or after 60 s.
wait_up() {
    local addr
    for _ in $(seq 600); do
        addr=$(ip -4 -o addr show dev ppp0 2>/dev/null | awk '{print $4}')
        if [[ -n $addr ]]; then
            echo "${addr%/*}"
            return 0
        fi
        kill -0 "$call_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# wait_end SECS: waits for sstpc to exit; sets $end to its status, or "running" after SECS.
end=""
wait_end() {
    for _ in $(seq $(($1 * 10))); do
        if ! kill -0 "$call_pid" 2>/dev/null; then
            wait "$call_pid"
            end=$?
            return 0
        fi
        sleep 0.1
    done
    end=running
}

# pppd_rc: pppd's exit status (it may outlive sstpc by a moment), or "none".
pppd_rc() {
    for _ in $(seq 50); do
        [[ -f /run/pppd.rc ]] && { cat /run/pppd.rc; return; }
        sleep 0.1
    done
    echo none
}

# stop_call: ends our side of the call (sstpc tears down PPP and sends CALL_DISCONNECT).
stop_call() {
    kill -TERM "$call_pid" 2>/dev/null
    wait_end 20
    for _ in $(seq 50); do ip link show ppp0 >/dev/null 2>&1 || break; sleep 0.1; done
}

# connect_up NAME PORT CA USER PASSWORD AUTH_OPTS: a call that must come up; sets $addr. Run again
# (at most 3 attempts) only when sstpc lost its post-handshake race (race_lost, above); the
# attempts used and the races lost are recorded. Not run in a subshell: call_pid must stay ours.
addr=""
connect_up() {
    local name=$1 attempt races=0
    for attempt in 1 2 3; do
        start_call "$@"
        if addr=$(wait_up); then
            rec "$name.attempts" "$attempt"
            rec "$name.races" "$races"
            # nodefaultroute: only the gateway's address is routed; add the server behind it.
            # ppp0 gets its address a moment before it is up, so retry (bounded).
            for _ in $(seq 50); do
                ip route replace "$SERVER_IP/32" dev ppp0 2>/dev/null && break
                sleep 0.1
            done
            return 0
        fi
        stop_call
        race_lost "$OUT/$name.sstpc.log" || break
        races=$((races + 1))
        echo "guest: $name: sstpc lost its post-handshake race (attempt $attempt)" >&2
    done
    rec "$name.attempts" failed
    rec "$name.races" "$races"
    return 1
}

# refused_call NAME PORT CA USER PASSWORD AUTH_OPTS: a call that must not come up. Run again (at
# most 3 attempts) only when sstpc lost its post-handshake race, i.e. before the gateway could
# refuse it; attempts and races are recorded.
refused_call() {
    local name=$1 attempt races=0
    for attempt in 1 2 3; do
        start_call "$@"
        wait_end 60
        if ! race_lost "$OUT/$name.sstpc.log"; then
            rec "$name.attempts" "$attempt"
            rec "$name.races" "$races"
            return 0
        fi
        races=$((races + 1))
        echo "guest: $name: sstpc lost its post-handshake race (attempt $attempt)" >&2
    done
    rec "$name.attempts" failed
    rec "$name.races" "$races"
}


# transfer IP PORT GET_BYTES PUT_BYTES: one GET and one PUT against the checksummed transfer server
# (tests/src/transfer_server.rs); records get/put bytes and sha256 for the host to compare. Bounded
# well inside the host's VM timeout; a loaded host's emulated guest is slow.
transfer() {
    timeout 600 python3 - "$1" "$2" "$3" "$4" >>"$results" 2>"$OUT/transfer.err" <<'PY'
import hashlib, os, socket, sys
ip, port, get_n, put_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection((ip, port), timeout=60)
s.sendall(b"GET %d\n" % get_n)
h, n = hashlib.sha256(), 0
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
s.close()
print(f"get.bytes={n}\nget.sha256={h.hexdigest()}", flush=True)
s = socket.create_connection((ip, port), timeout=60)
s.sendall(b"PUT\n")
h, n = hashlib.sha256(), 0
while n < put_n:
    b = os.urandom(min(1 << 16, put_n - n))
    s.sendall(b)
    h.update(b)
    n += len(b)
s.shutdown(socket.SHUT_WR)
s.recv(1)  # the server closes once it has everything
s.close()
print(f"put.bytes={n}\nput.sha256={h.hexdigest()}", flush=True)
PY
}
