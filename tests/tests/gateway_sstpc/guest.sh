#!/bin/bash
# Runs INSIDE the VM for tests/tests/gateway_sstpc.rs: the real client (sstpc 1.0.18 + pppd 2.4.9)
# against two sstp-gateway processes on the host, one call after another, in one boot (a boot
# costs ~20 s of emulated CPU). Every outcome goes to $OUT/results as key=value lines; the host
# test asserts on them. Steps that need the host to act (remove a user, SIGTERM the gateway)
# touch $OUT/ready-<step> and then wait, bounded, for the call to end.
#
# Environment (from the test): OUT, GW_A (MS-CHAPv2 only) and GW_B (PAP enabled) ports, CA_A,
# CA_B, SERVER_IP, SERVER_PORT, ALICE_PASSWORD, BOB_PASSWORD, GET_BYTES, PUT_BYTES.
set -u
results=$OUT/results
: >"$results"
rec() { echo "$1=$2" >>"$results"; echo "guest: $1=$2" >&2; }

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
# read for the HTTP 200 only when that write goes asynchronous. If the server's whole first flight
# is already in the socket when OpenSSL first reads after the ClientHello, TLS 1.3 completes in
# that one call, nothing is registered and sstpc exits "The event loop terminated unsuccessfully"
# (gateway/README.md, Troubleshooting). That needs a round trip shorter than the client's own
# write-to-read latency, as here (slirp to the host's loopback, emulated CPU: ~40% of calls without
# the delay, 0 of 18 with it); a real network's round trip is far longer. Give the guest's egress
# such a latency so the calls test the gateway over TLS 1.3 rather than that race.
if ! tc qdisc add dev "$VM_NIC" root netem delay 10ms; then
    echo "guest: cannot add the netem delay on $VM_NIC" >&2
    exit 1
fi

MSCHAP_ONLY="refuse-pap refuse-chap refuse-mschap refuse-eap"
PAP_ONLY="refuse-chap refuse-mschap refuse-mschap-v2 refuse-eap"
call_pid=""

# start_call NAME PORT CA USER PASSWORD AUTH_OPTS: starts sstpc (which starts pppd) in the background.
start_call() {
    local name=$1 port=$2 ca=$3 user=$4 password=$5 auth=$6
    # The previous call's ppp0 must be gone, or wait_up would take it for this call's.
    for _ in $(seq 50); do ip link show ppp0 >/dev/null 2>&1 || break; sleep 0.1; done
    rm -f /run/pppd.rc
    # shellcheck disable=SC2086  # auth options are words
    sstpc --log-stderr --log-level 4 --ca-cert "$ca" --user "$user" --password "$password" \
        "$VM_HOST_IP:$port" \
        noauth nodefaultroute $auth nobsdcomp nodeflate novj debug logfile "$OUT/$name.pppd.log" \
        >>"$OUT/$name.sstpc.log" 2>&1 &
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

# connect_up NAME PORT CA USER PASSWORD AUTH_OPTS: a call that must come up; sets $addr. Up to 3
# attempts, in case sstpc fails before the gateway is involved (see the netem delay above); the
# number used is recorded. Not run in a subshell: call_pid must stay ours.
addr=""
connect_up() {
    local name=$1 attempt
    for attempt in 1 2 3; do
        start_call "$@"
        if addr=$(wait_up); then
            rec "$name.attempts" "$attempt"
            # nodefaultroute: only the gateway's address is routed; add the server behind it.
            # ppp0 gets its address a moment before it is up, so retry (bounded).
            for _ in $(seq 50); do
                ip route replace "$SERVER_IP/32" dev ppp0 2>/dev/null && break
                sleep 0.1
            done
            return 0
        fi
        stop_call
    done
    rec "$name.attempts" failed
    return 1
}

# refused_call NAME PORT CA USER PASSWORD AUTH_OPTS: a call that must not come up. Retried (up to
# 3 attempts) only while sstpc fails before PPP starts, i.e. before the gateway could refuse it.
refused_call() {
    local name=$1 attempt
    for attempt in 1 2 3; do
        start_call "$@"
        wait_end 60
        if grep -aq "rcvd \[LCP" "$OUT/$name.pppd.log" 2>/dev/null; then
            rec "$name.attempts" "$attempt"
            return 0
        fi
    done
    rec "$name.attempts" failed
}

echo "guest: up after $(cut -d' ' -f1 /proc/uptime) s"

# 1. MS-CHAPv2 (with crypto binding) to gateway A; ping and bulk data to the server behind it.
if connect_up mschap "$GW_A" "$CA_A" alice "$ALICE_PASSWORD" "$MSCHAP_ONLY"; then
    rec mschap.addr "$addr"
    busybox ping -c 3 -W 5 "$SERVER_IP" >"$OUT/ping.log" 2>&1
    rec ping.rc $?
    # The checksums are the host's to compare; the guest only moves and hashes the bytes.
    timeout 300 python3 - "$SERVER_IP" "$SERVER_PORT" "$GET_BYTES" "$PUT_BYTES" >>"$results" 2>"$OUT/transfer.err" <<'PY'
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
    rec transfer.rc $?
    stop_call
    rec mschap.pppd_rc "$(pppd_rc)"
fi

# 2. A wrong password: refused, pppd gives up on authenticating itself.
refused_call wrong "$GW_A" "$CA_A" alice "not-$ALICE_PASSWORD" "$MSCHAP_ONLY"
rec wrong.sstpc_rc "$end"
rec wrong.pppd_rc "$(pppd_rc)"
grep -aq "Failed to authenticate ourselves to peer" "$OUT/wrong.pppd.log" && rec wrong.auth_failed 1
ip link show ppp0 >/dev/null 2>&1 && rec wrong.ppp0 present

# 3. PAP only, against the default gateway (MS-CHAPv2 only): no tunnel.
refused_call pap_a "$GW_A" "$CA_A" alice "$ALICE_PASSWORD" "$PAP_ONLY"
rec pap_a.sstpc_rc "$end"
rec pap_a.pppd_rc "$(pppd_rc)"
grep -aq "local  IP address" "$OUT/pap_a.pppd.log" && rec pap_a.ipcp up

# 4. PAP only, against gateway B (PAP enabled): a tunnel, and ping through it.
if connect_up pap_b "$GW_B" "$CA_B" alice "$ALICE_PASSWORD" "$PAP_ONLY"; then
    rec pap_b.addr "$addr"
    grep -aq "PAP authentication succeeded" "$OUT/pap_b.pppd.log" && rec pap_b.pap 1
    busybox ping -c 2 -W 5 "$SERVER_IP" >>"$OUT/ping.log" 2>&1
    rec pap_b.ping_rc $?
    stop_call
fi

# 5. bob's call; the host removes bob from the users file; the gateway must end the call.
if connect_up remove "$GW_A" "$CA_A" bob "$BOB_PASSWORD" "$MSCHAP_ONLY"; then
    rec remove.addr "$addr"
    touch "$OUT/ready-remove"
    wait_end 30
    rec remove.sstpc_rc "$end"
    rec remove.pppd_rc "$(pppd_rc)"
fi

# 6. alice again; the host sends SIGTERM to gateway A, which must disconnect the call cleanly.
if connect_up sigterm "$GW_A" "$CA_A" alice "$ALICE_PASSWORD" "$MSCHAP_ONLY"; then
    touch "$OUT/ready-sigterm"
    wait_end 30
    rec sigterm.sstpc_rc "$end"
    rec sigterm.pppd_rc "$(pppd_rc)"
    # sstpc logs each control packet as "RECV|SEND SSTP CRTL PKT" then "TYPE(n): NAME".
    log=$(tr -d '\000' <"$OUT/sigterm.sstpc.log")
    grep -a -A1 "RECV SSTP CRTL" <<<"$log" | grep -aq "TYPE(6): DISCONNECT," && rec sigterm.received_disconnect 1
    grep -a -A1 "SEND SSTP CRTL" <<<"$log" | grep -aq "TYPE(7): DISCONNECT ACK" && rec sigterm.sent_disconnect_ack 1
fi
echo "guest: done after $(cut -d' ' -f1 /proc/uptime) s"
