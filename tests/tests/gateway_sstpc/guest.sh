#!/bin/bash
# Runs INSIDE the VM for tests/tests/gateway_sstpc.rs: the real client (sstpc 1.0.18 + pppd 2.4.9)
# against two sstp-gateway processes on the host, one call after another, in one boot (a boot
# costs ~20 s of emulated CPU). Every outcome goes to $OUT/results as key=value lines; the host
# test asserts on them. Steps that need the host to act (remove a user, SIGTERM the gateway)
# touch $OUT/ready-<step> and then wait, bounded, for the call to end.
#
# Environment (from the test): OUT, GW_A (MS-CHAPv2 only) and GW_B (PAP enabled) ports, CA_A,
# CA_B, SERVER_IP, SERVER_PORT, ALICE_PASSWORD, BOB_PASSWORD, GET_BYTES, PUT_BYTES.
# GUEST_LIB: tests/vm/guest-lib.sh (the calls, the pppd wrapper, the race rule).
set -u
# shellcheck source-path=SCRIPTDIR source=../../vm/guest-lib.sh
. "$GUEST_LIB"
guest_setup

echo "guest: up after $(cut -d' ' -f1 /proc/uptime) s"

# 1. MS-CHAPv2 (with crypto binding) to gateway A; ping and bulk data to the server behind it.
if connect_up mschap "$GW_A" "$CA_A" alice "$ALICE_PASSWORD" "$MSCHAP_ONLY"; then
    rec mschap.addr "$addr"
    busybox ping -c 3 -W 5 "$SERVER_IP" >"$OUT/ping.log" 2>&1
    rec ping.rc $?
    # The checksums are the host's to compare; the guest only moves and hashes the bytes.
    transfer "$SERVER_IP" "$SERVER_PORT" "$GET_BYTES" "$PUT_BYTES"
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

# 6. sstpc --tls-ext with a port other than 443, as Linux users (and NetworkManager-sstp) reach
# such a gateway: sstpc sends the whole "gw.test:PORT" as SNI. rustls 0.23 refuses a name that is
# not a DNS name (illegal_parameter) and the gateway counts it as invalid_sni (gateway/README.md,
# Troubleshooting); against gateway B, whose metrics the host reads at the end.
echo "$VM_HOST_IP gw.test" >>/etc/hosts
CALL_HOST=gw.test CALL_OPTS=--tls-ext refused_call tlsext "$GW_B" "$CA_B" alice "$ALICE_PASSWORD" "$PAP_ONLY"
rec tlsext.sstpc_rc "$end"
log=$(tr -d '\000' <"$OUT/tlsext.sstpc.log")
grep -aq "SSTP CRTL PKT" <<<"$log" && rec tlsext.sstp sent
grep -aq "HTTP handshake with server failed\|Could not perform HTTP handshake" <<<"$log" && rec tlsext.handshake_failed 1
ip link show ppp0 >/dev/null 2>&1 && rec tlsext.ppp0 present

# 7. alice again; the host sends SIGTERM to gateway A, which must disconnect the call cleanly.
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
