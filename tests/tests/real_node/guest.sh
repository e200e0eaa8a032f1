#!/bin/bash
# Runs INSIDE the VM for tests/tests/real_node.rs: the real client (sstpc 1.0.18 + pppd 2.4.9)
# dials gateway pods running under the real node's kubelet, through their Service's NodePort on
# the node's address, one call after another in one boot. Outcomes go to $OUT/results as
# key=value lines. Steps where the host acts touch $OUT/ready-<step>; the host answers with
# $OUT/go-<step> where the guest must wait for it.
#
# Environment (from the test): OUT, GUEST_LIB (tests/vm/guest-lib.sh), NODE_NET (the nodes'
# /24), NODE_IP, SSTP_PORT (the Service's NodePort for 443), CA (the gateway's CA certificate),
# SERVER_IP, SERVER_PORT (the transfer server pod), ALICE_PASSWORD, BOB_PASSWORD, GET_BYTES,
# PUT_BYTES.
set -u
# shellcheck source-path=SCRIPTDIR source=../../vm/guest-lib.sh
. "$GUEST_LIB"
guest_setup

# The node is not on the guest's link: its traffic goes out through slirp, which connects from
# the host, and the host reaches the node over its bridge. The name is the one the certificate
# carries.
ip route add "$NODE_NET" via "$VM_HOST_IP"
echo "$NODE_IP gw.test" >>/etc/hosts
export CALL_HOST=gw.test

# Every step the host acts in is signalled with ready-STEP whether or not its call came up (the
# results say which), so a failed call never leaves the host waiting for a file that cannot come.

# wait_go STEP SECS: waits for the host's go-STEP; fails after SECS.
wait_go() {
    for _ in $(seq $(($2 * 10))); do
        [[ -e "$OUT/go-$1" ]] && return 0
        sleep 0.1
    done
    return 1
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }

echo "guest: up after $(uptime_s) s"

# 1. Through the Service: MS-CHAPv2 with crypto binding, ping and bulk data to the server pod.
if connect_up svc "$SSTP_PORT" "$CA" alice "$ALICE_PASSWORD" "$MSCHAP_ONLY"; then
    rec svc.addr "$addr"
    grep -aq "MSCHAP-v2 peer authentication succeeded\|CHAP authentication succeeded" \
        "$OUT/svc.pppd.log" && rec svc.mschap 1
    busybox ping -c 3 -W 5 "$SERVER_IP" >"$OUT/ping.log" 2>&1
    rec ping.rc $?
    started=$(uptime_s)
    transfer "$SERVER_IP" "$SERVER_PORT" "$GET_BYTES" "$PUT_BYTES"
    rec transfer.rc $?
    rec transfer.seconds "$(awk -v a="$started" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')"
    stop_call
    rec svc.pppd_rc "$(pppd_rc)"
fi

echo "guest: step 2 after $(uptime_s) s"
# 2. bob's call; the host disables bob with kubectl patch; the gateway must end the call.
if connect_up disable "$SSTP_PORT" "$CA" bob "$BOB_PASSWORD" "$MSCHAP_ONLY"; then
    rec disable.addr "$addr"
    touch "$OUT/ready-disable"
    wait_end 60
    rec disable.sstpc_rc "$end"
    rec disable.pppd_rc "$(pppd_rc)"
    log=$(tr -d '\000' <"$OUT/disable.sstpc.log")
    grep -a -A1 "RECV SSTP CRTL" <<<"$log" | grep -aq "TYPE(6): DISCONNECT," &&
        rec disable.received_disconnect 1
else
    touch "$OUT/ready-disable"
fi
# The host counts the sessions (none now) in status before the next call starts.
wait_go disable-counted 120 || rec disable.counted_wait timeout

echo "guest: step 3 after $(uptime_s) s"
# 3. alice again; the host rolls the gateway Deployment. Every time the call ends the guest
# records how it ended and dials again through the Service, until the host says the rollout is
# complete (the call then up must be on a new pod: no old one is left).
if connect_up roll "$SSTP_PORT" "$CA" alice "$ALICE_PASSWORD" "$MSCHAP_ONLY"; then
    touch "$OUT/ready-rollout"
    drops=0 longest=0
    # Bounded: the host's rollout wait (POD_BOUND in real_node.rs) is shorter.
    loop_until=$(awk -v now="$(uptime_s)" 'BEGIN { print int(now) + 600 }')
    while ! [[ -e "$OUT/go-rollout-done" ]]; do
        if (( ${loop_until} <= $(uptime_s | cut -d. -f1) )); then
            rec roll.loop timeout
            break
        fi
        if kill -0 "$call_pid" 2>/dev/null; then
            sleep 0.1
            continue
        fi
        down_at=$(uptime_s)
        drops=$((drops + 1))
        log=$(tr -d '\000' <"$OUT/roll.sstpc.log")
        if grep -a -A1 "RECV SSTP CRTL" <<<"$log" | grep -aq "TYPE(6): DISCONNECT,"; then
            rec "roll.drop$drops" disconnect
        else
            rec "roll.drop$drops" other
        fi
        cp "$OUT/roll.sstpc.log" "$OUT/roll.drop$drops.sstpc.log"
        # A pod that is going away may still take the next connection for a moment (kube-proxy
        # has not seen it leave yet): dial again, bounded.
        for attempt in $(seq 10); do
            connect_up roll "$SSTP_PORT" "$CA" alice "$ALICE_PASSWORD" "$MSCHAP_ONLY" && break
            sleep 1
        done
        kill -0 "$call_pid" 2>/dev/null || { rec roll.redial failed; break; }
        gap=$(awk -v a="$down_at" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
        rec "roll.gap$drops" "$gap"
        rec "roll.attempts$drops" "$attempt"
        longest=$(awk -v a="$longest" -v b="$gap" 'BEGIN { print (b > a) ? b : a }')
        (( drops >= 4 )) && break
    done
    rec roll.drops "$drops"
    rec roll.longest_gap "$longest"
    wait_go rollout-done 300
    busybox ping -c 3 -W 5 "$SERVER_IP" >>"$OUT/ping.log" 2>&1
    rec roll.final_ping_rc $?
    stop_call
else
    touch "$OUT/ready-rollout"
fi
echo "guest: done after $(uptime_s) s"
