"""MS-CHAPv2 and SSTP crypto-binding arithmetic the selftest's peer checks the real client with.

Server-side views of RFC 2759 (NT-Response, authenticator response), RFC 3079 (MPPE master keys,
giving the SSTP HLAK) and [MS-SSTP] 3.2.5.2 (CMK and compound MAC). `check_helpers()` tests them
against the published vectors first, so a wrong helper cannot make the selftest pass or fail.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# [MS-SSTP] 2.2.7 CRYPTO_BINDING hash protocol values
CRYPTO_HASH_SHA1, CRYPTO_HASH_SHA256 = 0x01, 0x02


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320). OpenSSL 3 hides MD4 in its legacy provider, so hashlib lacks it here."""

    def rotl(x: int, n: int) -> int:
        x &= 0xFFFFFFFF
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    msg = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off : off + 64])
        aa, bb, cc, dd = a, b, c, d
        f = lambda x_, y, z: (x_ & y) | (~x_ & z)  # noqa: E731
        g = lambda x_, y, z: (x_ & y) | (x_ & z) | (y & z)  # noqa: E731
        h = lambda x_, y, z: x_ ^ y ^ z  # noqa: E731
        for i in range(16):  # round 1: k in order, shifts 3 7 11 19
            s = (3, 7, 11, 19)[i % 4]
            if i % 4 == 0:
                a = rotl(a + f(b, c, d) + x[i], s)
            elif i % 4 == 1:
                d = rotl(d + f(a, b, c) + x[i], s)
            elif i % 4 == 2:
                c = rotl(c + f(d, a, b) + x[i], s)
            else:
                b = rotl(b + f(c, d, a) + x[i], s)
        for i in range(16):  # round 2: k = 0,4,8,12,1,5,...; shifts 3 5 9 13
            k = (i % 4) * 4 + i // 4
            s = (3, 5, 9, 13)[i % 4]
            t = x[k] + 0x5A827999
            if i % 4 == 0:
                a = rotl(a + g(b, c, d) + t, s)
            elif i % 4 == 1:
                d = rotl(d + g(a, b, c) + t, s)
            elif i % 4 == 2:
                c = rotl(c + g(d, a, b) + t, s)
            else:
                b = rotl(b + g(c, d, a) + t, s)
        order = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
        for i in range(16):  # round 3: bit-reversed k; shifts 3 9 11 15
            k = order[i]
            s = (3, 9, 11, 15)[i % 4]
            t = x[k] + 0x6ED9EBA1
            if i % 4 == 0:
                a = rotl(a + h(b, c, d) + t, s)
            elif i % 4 == 1:
                d = rotl(d + h(a, b, c) + t, s)
            elif i % 4 == 2:
                c = rotl(c + h(d, a, b) + t, s)
            else:
                b = rotl(b + h(c, d, a) + t, s)
        a, b, c, d = (a + aa) & 0xFFFFFFFF, (b + bb) & 0xFFFFFFFF, (c + cc) & 0xFFFFFFFF, (d + dd) & 0xFFFFFFFF
    return struct.pack("<4I", a, b, c, d)


def des_encrypt(key7: bytes, block: bytes) -> bytes:
    """DES-encrypt one block with a 56-bit key spread over 8 bytes (RFC 2759 DesEncrypt)."""
    bits = int.from_bytes(key7, "big")
    key8 = bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))
    # TripleDES with one 8-byte key is single DES (K1 = K2 = K3).
    enc = Cipher(algorithms.TripleDES(key8), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def nt_response(auth_challenge: bytes, peer_challenge: bytes, user: str, password: str) -> bytes:
    """GenerateNTResponse of RFC 2759 section 8.1."""
    challenge = hashlib.sha1(peer_challenge + auth_challenge + user.encode()).digest()[:8]
    zhash = md4(password.encode("utf-16-le")) + b"\x00" * 5
    return b"".join(des_encrypt(zhash[i : i + 7], challenge) for i in (0, 7, 14))


def authenticator_response(
    nt_resp: bytes, auth_challenge: bytes, peer_challenge: bytes, user: str, password: str
) -> bytes:
    """GenerateAuthenticatorResponse of RFC 2759 section 8.7: the `S=...` a server sends in Success."""
    hash_hash = md4(md4(password.encode("utf-16-le")))
    digest = hashlib.sha1(hash_hash + nt_resp + b"Magic server to client signing constant").digest()
    challenge = hashlib.sha1(peer_challenge + auth_challenge + user.encode()).digest()[:8]
    digest = hashlib.sha1(digest + challenge + b"Pad to make it do more than one iteration").digest()
    return b"S=" + digest.hex().upper().encode()


MPPE_CLIENT_SEND = b"On the client side, this is the send key; on the server side, it is the receive key."
MPPE_CLIENT_RECV = b"On the client side, this is the receive key; on the server side, it is the send key."


def server_hlak(nt_resp: bytes, password: str) -> bytes:
    """[MS-SSTP] 3.2.5.2: server HLAK = MasterReceiveKey | MasterSendKey (RFC 3079 section 3, 128-bit)."""
    hash_hash = md4(md4(password.encode("utf-16-le")))
    master = hashlib.sha1(hash_hash + nt_resp + b"This is the MPPE Master Key").digest()[:16]

    def start_key(magic: bytes) -> bytes:
        return hashlib.sha1(master + bytes(40) + magic + b"\xf2" * 40).digest()[:16]

    return start_key(MPPE_CLIENT_SEND) + start_key(MPPE_CLIENT_RECV)


def compound_mac(hash_protocol: int, hlak: bytes, call_connected: bytes) -> bytes:
    """[MS-SSTP] 3.2.5.2: CMK = HMAC(HLAK, seed|LEN|1); CMAC over the packet with the MAC field zeroed."""
    h = {CRYPTO_HASH_SHA1: hashlib.sha1, CRYPTO_HASH_SHA256: hashlib.sha256}[hash_protocol]
    size = h().digest_size
    cmk = hmac.new(hlak, b"SSTP inner method derived CMK" + struct.pack("<H", size) + b"\x01", h).digest()
    zeroed = call_connected[:80] + bytes(32)
    return hmac.new(cmk, zeroed, h).digest().ljust(32, b"\x00")


def check_helpers() -> None:
    """RFC 2759 section 9.2 vector, so a wrong helper cannot make the check pass or fail."""
    got = nt_response(
        bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628"),
        bytes.fromhex("21402324255E262A28295F2B3A337C7E"),
        "User",
        "clientPass",
    )
    want = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
    if got != want:
        raise RuntimeError(f"MS-CHAPv2 helper broken: {got.hex()} != {want.hex()}")
    auth = authenticator_response(
        want, bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628"), bytes.fromhex("21402324255E262A28295F2B3A337C7E"),
        "User", "clientPass",
    )  # fmt: skip
    if auth != b"S=407A5589115FD0D6209F510FE9C04566932CDA56":
        raise RuntimeError(f"authenticator response helper broken: {auth!r}")
    # [MS-SSTP] 4.7 examples: HLAK and the CALL_CONNECTED whose last 32 bytes are the published CMAC.
    for proto, hlak, packet in SPEC_CRYPTO_BINDING_EXAMPLES:
        raw = bytes.fromhex(packet)
        if compound_mac(proto, bytes.fromhex(hlak), raw) != raw[80:]:
            raise RuntimeError(f"compound MAC helper broken for hash protocol {proto}")


SPEC_CRYPTO_BINDING_EXAMPLES = [
    (
        0x02,
        "2A1BB40D55AB0F5EF32F06F2B3CC73C48FD3FAC41D7A1315A19228D9024CA164",
        "10010070000400010003006800000002"
        "412B489AEBD7ECC7D08966F26BE7CD72B231A0E9210D7C91B308862B0344C435"
        "7993EF314C493DACE9F02D60E7E61C84B6690AAFE9D7AEEA92CBBE8AD599422D"
        "52A68EFD8CFFBF52770B8F0FE8EC73716583AF6D611EB6D179B3B20840985449",
    ),
    (
        0x01,
        "4B3128F43925D9006EEFB1C4E86515A1D88E56BAB3CA2BDF0373B7F5A8A13B19",
        "10010070000400010003006800000001"
        "0F1A2D58D4A3E3000FAD3CE4906E07B707AA9E441CCEAC5CBD7B2CC1C9D86CDF"
        "5826B629BDA59B8E6FD8DCD2622FD34C534805A5000000000000000000000000"
        "69915DD583D8062FEF16F61DB2F03290EC27CB6C000000000000000000000000",
    ),
]
