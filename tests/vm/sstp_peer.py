"""A scripted SSTP server for tests/vm/selftest: just enough of [MS-SSTP] and PPP to walk the
real sstpc + pppd through TLS, HTTP, call setup, MS-CHAPv2, crypto binding, IPCP and pings.

It is a test double, not a server: it expects one known client doing one known thing and fails
with a reason (`Failure`) at the first step that differs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import select
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

from mschapv2 import (
    CRYPTO_HASH_SHA1,
    CRYPTO_HASH_SHA256,
    authenticator_response,
    compound_mac,
    nt_response,
    server_hlak,
)

HTTP_REQUEST_LINE = "SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n"  # [MS-SSTP] 4.1
USER = "selftest-user"
PASSWORD = "S3lf-test pass"  # a space on purpose: sstpc quotes it into pppd's options file
# Tunnel addresses from TEST-NET-1 (RFC 5737): they exist only on the guest's ppp0 and in this peer.
TUN_SERVER_IP = "192.0.2.1"
TUN_CLIENT_IP = "192.0.2.2"
PING_COUNT = 3  # the guest runs `ping -c 3`; the peer ends the call after answering that many

# [MS-SSTP] 2.2.1-2.2.9
SSTP_VERSION = 0x10
SSTP_CONTROL = 0x01
MSG_CALL_CONNECT_REQUEST = 0x0001
MSG_CALL_CONNECT_ACK = 0x0002
MSG_CALL_CONNECTED = 0x0004
MSG_CALL_DISCONNECT = 0x0006
MSG_CALL_DISCONNECT_ACK = 0x0007
CALL_CONNECTED_LEN = 112
ATTR_ENCAPSULATED_PROTOCOL_ID = 0x01
ATTR_STATUS_INFO = 0x02
ATTR_CRYPTO_BINDING_REQ = 0x04
HASH_BITMASK_SHA1_SHA256 = 0x03
# RFC 1661 (LCP), RFC 1332 (IPCP), RFC 1994 / RFC 2759 (CHAP, MS-CHAPv2), RFC 792 (ICMP)
PPP_IP = 0x0021
PPP_IPCP = 0x8021
PPP_LCP = 0xC021
PPP_CHAP = 0xC223
CONF_REQ, CONF_ACK, CONF_NAK, CONF_REJ = 1, 2, 3, 4
LCP_PROTOCOL_REJECT, LCP_ECHO_REQUEST, LCP_ECHO_REPLY = 8, 9, 10
LCP_OPT_AUTH_PROTOCOL = 3
LCP_OPT_MAGIC = 5
IPCP_OPT_ADDRESS = 3
CHAP_ALGORITHM_MSCHAPV2 = 0x81
CHAP_CHALLENGE, CHAP_RESPONSE, CHAP_SUCCESS = 1, 2, 3
IPPROTO_ICMP = 1
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
IO_TIMEOUT_S = 120.0  # the peer waits this long per read once a client is connected
SUCCESS_HOLD_S = 2.0
# The wrong-CA call and the real call, each run at most RACE_ATTEMPTS times by the guest.
RACE_ATTEMPTS = 3
MAX_CONNECTIONS = 2 * RACE_ATTEMPTS


class Failure(Exception):
    """A step of the exchange did not go as the real client must behave."""


def read_exact(conn: ssl.SSLSocket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise Failure(f"client closed the connection (wanted {n - len(buf)} more bytes)")
        buf += chunk
    return buf


def read_sstp(conn: ssl.SSLSocket, prefix: bytes = b"") -> tuple[bool, bytes]:
    """One SSTP packet: (is_control, body after the 4-byte header); `prefix`: its first bytes, already read."""
    head = prefix + read_exact(conn, 4 - len(prefix))
    if head[0] != SSTP_VERSION:
        raise Failure(f"bad SSTP version byte {head[0]:#x}")
    length = struct.unpack(">H", head[2:4])[0] & 0x0FFF
    if length < 4:
        raise Failure(f"bad SSTP length {length}")
    return bool(head[1] & SSTP_CONTROL), read_exact(conn, length - 4)


def sstp_control(msg_type: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack(">HH", msg_type, len(attrs))
    for attr_id, value in attrs:
        body += struct.pack(">BBH", 0, attr_id, 4 + len(value)) + value
    return struct.pack(">BBH", SSTP_VERSION, SSTP_CONTROL, 4 + len(body)) + body


def sstp_ppp(protocol: int, payload: bytes) -> bytes:
    frame = b"\xff\x03" + struct.pack(">H", protocol) + payload
    return struct.pack(">BBH", SSTP_VERSION, 0, 4 + len(frame)) + frame


def parse_ppp(frame: bytes) -> tuple[int, bytes]:
    """(protocol, information), accepting ACFC and PFC compressed headers."""
    if frame[:2] == b"\xff\x03":
        frame = frame[2:]
    if frame and frame[0] & 1:
        return frame[0], frame[1:]
    if len(frame) < 2:
        raise Failure("truncated PPP frame")
    return struct.unpack(">H", frame[:2])[0], frame[2:]


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, for the IPv4 and ICMP headers of echo replies."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_reply(packet: bytes, server_ip: bytes) -> bytes | None:
    """The ICMP echo reply to an IPv4 echo request addressed to server_ip, else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    packet = packet[: struct.unpack(">H", packet[2:4])[0]]
    if packet[9] != IPPROTO_ICMP or packet[16:20] != server_ip or len(packet) < ihl + 8:
        return None
    if packet[ihl] != ICMP_ECHO_REQUEST:
        return None
    icmp = bytearray(packet[ihl:])
    icmp[0], icmp[2:4] = ICMP_ECHO_REPLY, b"\x00\x00"
    icmp[2:4] = struct.pack(">H", inet_checksum(bytes(icmp)))
    header = bytearray(packet[:ihl])
    header[12:16], header[16:20] = packet[16:20], packet[12:16]
    header[8], header[10:12] = 64, b"\x00\x00"
    header[10:12] = struct.pack(">H", inet_checksum(bytes(header)))
    return bytes(header + icmp)


class Peer(threading.Thread):
    """Serves the guest's two connections and records what the client did, step by step.

    Connection 1 comes from sstpc given a CA that did not sign our certificate: its TLS handshake
    must fail. Connection 2 comes from sstpc given the right CA and is walked through the call.
    """

    def __init__(self, cert: Path, key: Path, accept_timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        # sstpc 1.0.18 over TLS 1.3 dies ~30% of the time right after our 200 OK ("The event loop
        # terminated unsuccessfully"), with or without session tickets; over TLS 1.2 it never
        # did in the runs measured (see README.md). The selftest tests the harness, so TLS 1.2.
        self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        self.cert_hash = {
            CRYPTO_HASH_SHA1: hashlib.sha1(der).digest().ljust(32, b"\x00"),
            CRYPTO_HASH_SHA256: hashlib.sha256(der).digest(),
        }
        # Bound to loopback only: the guest must get here through slirp's 10.0.2.2 mapping.
        self.sock = socket.create_server(("127.0.0.1", 0))
        # Each accept waits as long as the whole VM may run: the first connection comes only after
        # the guest booted, which took 116 s on a loaded host (more than IO_TIMEOUT_S).
        self.sock.settimeout(accept_timeout_s)
        self.port = self.sock.getsockname()[1]
        self.steps: list[str] = []
        self.error: str | None = None
        self.done = False
        self.nonce = os.urandom(32)
        self.magic = os.urandom(4)
        self.call_connected: bytes | None = None
        self.pending = b""
        self.hangups = 0
        self.echoes = 0

    def step(self, text: str) -> None:
        self.steps.append(text)
        print(f"selftest: peer: {text}", flush=True)

    def accept(self, what: str) -> socket.socket:
        raw, addr = self.sock.accept()
        raw.settimeout(IO_TIMEOUT_S)
        self.step(f"{what}: TCP connection from {addr[0]}:{addr[1]}")
        return raw

    def run(self) -> None:
        """Serves connections until one completes the call.

        The first connection is sstpc with the wrong CA; it must hang up after our 200 OK. Any
        later connection may also hang up there: sstpc 1.0.18 sometimes loses a race of its own
        right after its TLS handshake (README.md, "Real-client quirks") and the guest then runs it
        again, a bounded number of times. Only hang-ups before the first SSTP packet are allowed
        to repeat; the guest checks from sstpc's own logs which hang-up was which.
        """
        try:
            for n in range(1, MAX_CONNECTIONS + 1):
                raw = self.accept(f"connection {n}")
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    self.step(f"connection {n}: TLS up ({conn.version()}, {conn.cipher()[0]})")
                    if not self.http_then_first_packet(conn, n):
                        self.hangups += 1
                        # Kept as the verdict if no further connection comes.
                        self.error = f"connection {n} hung up after 200 OK and no further call came"
                        continue
                    if n == 1:
                        raise Failure("sstpc went on with SSTP although --ca-cert did not sign our certificate")
                    self.error = None
                    self.serve(conn)
                    self.done = True
                    return
            raise Failure(f"{MAX_CONNECTIONS} connections and none completed the call")
        except (Failure, OSError, ssl.SSLError) as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.sock.close()

    def http_then_first_packet(self, conn: ssl.SSLSocket, n: int) -> bool:
        """Reads the HTTP request and answers 200 OK; True if the client then sends SSTP.

        sstpc 1.0.18 checks the certificate only after the HTTP exchange (sstp_client_http_done):
        with the wrong CA, TLS completes, SSTP_DUPLEX_POST arrives, and only our 200 OK makes it
        verify and quit.
        """
        self.read_http(conn)
        try:
            conn.sendall(HTTP_OK)
            conn.settimeout(IO_TIMEOUT_S)
            data = conn.recv(4)
        except (ssl.SSLError, ConnectionError) as e:
            data = b""
            self.step(f"connection {n}: connection error after 200 OK ({type(e).__name__})")
        if not data:
            self.step(f"connection {n}: hung up after 200 OK without sending CALL_CONNECT_REQUEST")
            return False
        self.pending = data
        return True

    def read_http(self, conn: ssl.SSLSocket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                raise Failure("client closed before the end of its HTTP request")
            head += chunk
            if len(head) > 8192:
                raise Failure("HTTP request head too long")
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.step(f"HTTP request line: {lines[0]}")
        for line in lines[1:]:
            self.step(f"HTTP header: {line}")
        if lines[0] != HTTP_REQUEST_LINE:
            raise Failure(f"unexpected request line {lines[0]!r}")
        if rest:
            raise Failure("client pipelined bytes after its HTTP request (not expected from sstpc)")

    def serve(self, conn: ssl.SSLSocket) -> None:
        """The rest of the call, after http_then_first_packet read the first bytes of SSTP."""
        control, body = read_sstp(conn, self.pending)
        want = struct.pack(">HHBBHH", MSG_CALL_CONNECT_REQUEST, 1, 0, ATTR_ENCAPSULATED_PROTOCOL_ID, 6, 1)
        if not control or body != want:
            raise Failure(f"expected CALL_CONNECT_REQUEST, got control={control} {body.hex()}")
        self.step("SSTP CALL_CONNECT_REQUEST (PPP)")
        binding_req = bytes(3) + bytes([HASH_BITMASK_SHA1_SHA256]) + self.nonce
        conn.sendall(sstp_control(MSG_CALL_CONNECT_ACK, [(ATTR_CRYPTO_BINDING_REQ, binding_req)]))
        nt_resp = self.ppp(conn)
        self.check_binding(conn, nt_resp)
        self.network(conn)
        time.sleep(0.5)  # let the last echo reply reach ping before the call goes down
        self.disconnect(conn)

    def next_ppp(self, conn: ssl.SSLSocket) -> tuple[int, bytes]:
        while True:
            control, body = read_sstp(conn)
            if control:
                msg_type = struct.unpack(">H", body[:2])[0]
                if msg_type == MSG_CALL_CONNECTED and len(body) == CALL_CONNECTED_LEN - 4:
                    self.step("SSTP CALL_CONNECTED (crypto binding) received")
                    self.call_connected = struct.pack(">BBH", SSTP_VERSION, SSTP_CONTROL, CALL_CONNECTED_LEN) + body
                    continue
                raise Failure(f"unexpected SSTP control message {body.hex()}")
            return parse_ppp(body)

    def ppp(self, conn: ssl.SSLSocket) -> bytes:
        """LCP with MS-CHAPv2 as our Auth-Protocol, then one challenge; returns the NT-Response."""
        ident = 1
        ours = bytes([LCP_OPT_AUTH_PROTOCOL, 5]) + struct.pack(">H", PPP_CHAP) + bytes([CHAP_ALGORITHM_MSCHAPV2])
        ours += bytes([LCP_OPT_MAGIC, 6]) + self.magic
        conn.sendall(sstp_ppp(PPP_LCP, struct.pack(">BBH", CONF_REQ, ident, 4 + len(ours)) + ours))
        acked_ours = acked_theirs = False
        while not (acked_ours and acked_theirs):
            proto, info = self.next_ppp(conn)
            if proto != PPP_LCP or len(info) < 4:
                continue  # nothing but LCP is valid before LCP opens; pppd sends none
            code, rid, length = struct.unpack(">BBH", info[:4])
            if code == CONF_REQ:
                if not acked_theirs:
                    self.step(f"pppd LCP Configure-Request options {info[4:length].hex()}")
                conn.sendall(sstp_ppp(PPP_LCP, bytes([CONF_ACK]) + info[1:length]))
                acked_theirs = True
            elif code == CONF_ACK and rid == ident:
                self.step("pppd acked our LCP Configure-Request (Auth-Protocol CHAP/MS-CHAPv2)")
                acked_ours = True
            elif code in (CONF_NAK, CONF_REJ):
                raise Failure(f"pppd refused MS-CHAPv2 (LCP code {code}, options {info[4:length].hex()})")
        challenge = os.urandom(16)
        name = b"sstp-selftest"
        chap = bytes([CHAP_CHALLENGE, 7]) + struct.pack(">H", 4 + 1 + 16 + len(name)) + bytes([16]) + challenge + name
        conn.sendall(sstp_ppp(PPP_CHAP, chap))
        while True:
            proto, info = self.next_ppp(conn)
            if proto == PPP_CHAP:
                break
        if len(info) < 5 + 49 or info[0] != CHAP_RESPONSE or info[1] != 7 or info[4] != 49:
            raise Failure(f"bad CHAP response {info.hex()}")
        length = struct.unpack(">H", info[2:4])[0]
        value, user = info[5:54], info[54:length].decode("utf-8", "replace")
        self.step(f"pppd CHAP Response: name={user!r}, value-size 49")
        if user != USER:
            raise Failure(f"CHAP name {user!r}, expected {USER!r}")
        # Value: PeerChallenge(16) | Reserved(8) | NT-Response(24) | Flags(1)  [RFC 2759 section 4]
        peer_challenge, nt_resp = value[:16], value[24:48]
        if nt_resp != nt_response(challenge, peer_challenge, USER, PASSWORD):
            raise Failure("NT-Response does not match the password given to sstpc")
        self.step("NT-Response matches the password given to sstpc (RFC 2759)")
        self.watch_before_success(conn)
        message = authenticator_response(nt_resp, challenge, peer_challenge, USER, PASSWORD) + b" M=selftest"
        conn.sendall(sstp_ppp(PPP_CHAP, bytes([CHAP_SUCCESS, 7]) + struct.pack(">H", 4 + len(message)) + message))
        return nt_resp

    def watch_before_success(self, conn: ssl.SSLSocket) -> None:
        """Holds CHAP Success back briefly to see whether CALL_CONNECTED comes before it.

        Only recorded, not required: the gateway must accept either order ([MS-SSTP] 3.2.5.2
        note in the protocol reference: some clients send it right after their CHAP Response).
        """
        end = time.monotonic() + SUCCESS_HOLD_S
        while self.call_connected is None:
            left = end - time.monotonic()
            # select() on the TCP socket only sees bytes OpenSSL has not buffered yet.
            if left <= 0 or not (conn.pending() or select.select([conn], [], [], left)[0]):
                break
            self.next_ppp(conn)
        when = "before" if self.call_connected else "not before"
        self.step(f"CALL_CONNECTED {when} our CHAP Success (held back {SUCCESS_HOLD_S:.0f} s)")

    def check_binding(self, conn: ssl.SSLSocket, nt_resp: bytes) -> None:
        """Waits for CALL_CONNECTED and checks it the way the gateway must ([MS-SSTP] 3.2.5.2)."""
        while self.call_connected is None:
            proto, info = self.next_ppp(conn)
            if proto != PPP_CHAP:
                self.step(f"pppd sent protocol {proto:#06x} (network phase) while we wait for CALL_CONNECTED")
        raw = self.call_connected
        hash_protocol, nonce, cert_hash, cmac = raw[15], raw[16:48], raw[48:80], raw[80:112]
        if nonce != self.nonce:
            raise Failure("CALL_CONNECTED nonce differs from the one in our CALL_CONNECT_ACK")
        if hash_protocol not in self.cert_hash:
            raise Failure(f"CALL_CONNECTED hash protocol {hash_protocol} was not offered")
        if cert_hash != self.cert_hash[hash_protocol]:
            raise Failure("CALL_CONNECTED certificate hash is not the hash of our TLS certificate")
        if not hmac.compare_digest(cmac, compound_mac(hash_protocol, server_hlak(nt_resp, PASSWORD), raw)):
            raise Failure("CALL_CONNECTED compound MAC does not verify with the MS-CHAPv2 HLAK")
        name = {CRYPTO_HASH_SHA1: "SHA1", CRYPTO_HASH_SHA256: "SHA256"}[hash_protocol]
        self.step(f"crypto binding verified: {name}, nonce, certificate hash and compound MAC")

    def network(self, conn: ssl.SSLSocket) -> None:
        """IPCP gives the client TUN_CLIENT_IP; then ICMP echo requests are answered until PING_COUNT."""
        server_ip, client_ip = socket.inet_aton(TUN_SERVER_IP), socket.inet_aton(TUN_CLIENT_IP)
        ours = bytes([IPCP_OPT_ADDRESS, 6]) + server_ip
        conn.sendall(sstp_ppp(PPP_IPCP, struct.pack(">BBH", CONF_REQ, 1, 4 + len(ours)) + ours))
        acked_ours = acked_theirs = False
        rejected: set[int] = set()
        reject_id = 0x40
        while self.echoes < PING_COUNT:
            proto, info = self.next_ppp(conn)
            if proto == PPP_LCP and info[:1] == bytes([LCP_ECHO_REQUEST]) and len(info) >= 8:
                conn.sendall(sstp_ppp(PPP_LCP, bytes([LCP_ECHO_REPLY]) + info[1:4] + self.magic + info[8:]))
            elif proto == PPP_IPCP and len(info) >= 4:
                code, rid, length = struct.unpack(">BBH", info[:4])
                if code == CONF_REQ:
                    acked_theirs = self.ipcp_request(conn, info[:length], client_ip) or acked_theirs
                elif code == CONF_ACK and rid == 1:
                    acked_ours = True
                elif code in (CONF_NAK, CONF_REJ):
                    raise Failure(f"pppd refused our IPCP address (code {code}, {info[4:length].hex()})")
                if acked_ours and acked_theirs and not self.echoes:
                    self.step(f"IPCP open: client {TUN_CLIENT_IP}, server {TUN_SERVER_IP}")
            elif proto == PPP_IP:
                reply = echo_reply(info, server_ip)
                if reply is not None:
                    conn.sendall(sstp_ppp(PPP_IP, reply))
                    self.echoes += 1
                    self.step(f"ICMP echo request {self.echoes} from the client through ppp0, answered")
            elif proto >> 8 in (0x80, 0x82, 0xC0) and proto != PPP_LCP and proto not in rejected:
                # IPV6CP, CCP, ...: RFC 1661 5.7 Protocol-Reject, once per protocol.
                rejected.add(proto)
                reject_id += 1
                body = struct.pack(">H", proto) + info
                conn.sendall(
                    sstp_ppp(PPP_LCP, struct.pack(">BBH", LCP_PROTOCOL_REJECT, reject_id, 4 + len(body)) + body)
                )
                self.step(f"pppd sent protocol {proto:#06x}: Protocol-Reject")

    def ipcp_request(self, conn: ssl.SSLSocket, packet: bytes, client_ip: bytes) -> bool:
        """Answers pppd's IPCP Configure-Request; True when it was acked as it stands."""
        options, offset, others, address = packet[4:], 0, b"", None
        while offset + 2 <= len(options):
            kind, size = options[offset], options[offset + 1]
            if size < 2 or offset + size > len(options):
                raise Failure(f"malformed IPCP options {options.hex()}")
            if kind == IPCP_OPT_ADDRESS and size == 6:
                address = options[offset + 2 : offset + 6]
            else:
                others += options[offset : offset + size]
            offset += size
        if others:
            reply = bytes([CONF_REJ, packet[1]]) + struct.pack(">H", 4 + len(others)) + others
        elif address != client_ip:
            nak = bytes([IPCP_OPT_ADDRESS, 6]) + client_ip
            reply = bytes([CONF_NAK, packet[1]]) + struct.pack(">H", 4 + len(nak)) + nak
        else:
            reply = bytes([CONF_ACK]) + packet[1:]
        conn.sendall(sstp_ppp(PPP_IPCP, reply))
        return reply[0] == CONF_ACK

    def disconnect(self, conn: ssl.SSLSocket) -> None:
        status_info = bytes(3) + bytes([0]) + struct.pack(">I", 0)  # AttribID NO_ERROR, status 0
        conn.sendall(sstp_control(MSG_CALL_DISCONNECT, [(ATTR_STATUS_INFO, status_info)]))
        while True:
            control, body = read_sstp(conn)
            if control and struct.unpack(">H", body[:2])[0] == MSG_CALL_DISCONNECT_ACK:
                self.step("SSTP CALL_DISCONNECT answered with CALL_DISCONNECT_ACK")
                return
