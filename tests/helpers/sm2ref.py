"""A second, independent SM2/SM3 implementation in plain Python, written from the standards' text.

Slow (milliseconds per operation) and not constant-time: it exists only so that tests can check the
native library (Tongsuo, :mod:`citypass.credential.sm2`) against something that shares none of its code,
and check both against the sample values printed in the standards:

* SM3 (GB/T 32905-2016, Annex A): ``"abc"`` and ``"abcd" * 16``;
* SM2 signature (GM/T 0003.2-2012 / GB/T 32918.2-2016, Annex A.2): the Fp-256 *test* curve, signer ID
  ``ALICE123@YAHOO.COM``, message ``"message digest"``, fixed ``k``: published ``Z_A``, ``e``, ``r``, ``s``.

Curves are parameters, so the same code runs the standard's test curve and the recommended curve
``sm2p256v1`` that real codes use.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- SM3 -----------------------------------------------------------------------------------------------

_IV = [0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600, 0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E]
_M32 = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _M32


def _p0(x: int) -> int:
    return x ^ _rotl(x, 9) ^ _rotl(x, 17)


def _p1(x: int) -> int:
    return x ^ _rotl(x, 15) ^ _rotl(x, 23)


def _compress(v: list[int], block: bytes) -> list[int]:
    w = [int.from_bytes(block[i:i + 4], "big") for i in range(0, 64, 4)]
    for j in range(16, 68):
        w.append(_p1(w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
    w1 = [w[j] ^ w[j + 4] for j in range(64)]
    a, b, c, d, e, f, g, h = v
    for j in range(64):
        t = 0x79CC4519 if j < 16 else 0x7A879D8A
        ss1 = _rotl((_rotl(a, 12) + e + _rotl(t, j)) & _M32, 7)
        ss2 = ss1 ^ _rotl(a, 12)
        ff = (a ^ b ^ c) if j < 16 else ((a & b) | (a & c) | (b & c))
        gg = (e ^ f ^ g) if j < 16 else ((e & f) | (~e & g))
        tt1 = (ff + d + ss2 + w1[j]) & _M32
        tt2 = (gg + h + ss1 + w[j]) & _M32
        d, c, b, a = c, _rotl(b, 9), a, tt1
        h, g, f, e = g, _rotl(f, 19), e, _p0(tt2)
    return [x ^ y for x, y in zip([a, b, c, d, e, f, g, h], v, strict=True)]


def sm3(data: bytes) -> bytes:
    bits = len(data) * 8
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + bits.to_bytes(8, "big")
    v = list(_IV)
    for i in range(0, len(padded), 64):
        v = _compress(v, padded[i:i + 64])
    return b"".join(x.to_bytes(4, "big") for x in v)


# -- SM2 over a prime field ----------------------------------------------------------------------------

Point = tuple[int, int] | None


@dataclass(frozen=True)
class Curve:
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    def add(self, p1: Point, p2: Point) -> Point:
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        (x1, y1), (x2, y2) = p1, p2
        if x1 == x2 and (y1 + y2) % self.p == 0:
            return None
        if p1 == p2:
            lam = (3 * x1 * x1 + self.a) * pow(2 * y1, -1, self.p) % self.p
        else:
            lam = (y2 - y1) * pow(x2 - x1, -1, self.p) % self.p
        x3 = (lam * lam - x1 - x2) % self.p
        return x3, (lam * (x1 - x3) - y1) % self.p

    def mul(self, k: int, point: Point) -> Point:
        out: Point = None
        while k:
            if k & 1:
                out = self.add(out, point)
            point = self.add(point, point)
            k >>= 1
        return out

    @property
    def g(self) -> Point:
        return self.gx, self.gy

    def z(self, ident: bytes, pub: tuple[int, int]) -> bytes:
        """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
        parts = [self.a, self.b, self.gx, self.gy, pub[0], pub[1]]
        return sm3((len(ident) * 8).to_bytes(2, "big") + ident + b"".join(v.to_bytes(32, "big") for v in parts))

    def digest(self, ident: bytes, pub: tuple[int, int], message: bytes) -> int:
        return int.from_bytes(sm3(self.z(ident, pub) + message), "big")

    def sign(self, d: int, message: bytes, k: int, ident: bytes = b"1234567812345678") -> tuple[int, int]:
        pub = self.mul(d, self.g)
        assert pub is not None
        e = self.digest(ident, pub, message)
        kg = self.mul(k, self.g)
        assert kg is not None
        r = (e + kg[0]) % self.n
        s = pow(1 + d, -1, self.n) * (k - r * d) % self.n
        return r, s

    def verify(self, pub: tuple[int, int], message: bytes, r: int, s: int,
               ident: bytes = b"1234567812345678") -> bool:
        if not (1 <= r < self.n and 1 <= s < self.n):
            return False
        t = (r + s) % self.n
        if t == 0:
            return False
        point = self.add(self.mul(s, self.g), self.mul(t, pub))
        if point is None:
            return False
        return (self.digest(ident, pub, message) + point[0]) % self.n == r


#: The recommended curve every real SM2 code uses (GB/T 32918.5-2017).
SM2P256V1 = Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)

#: The Fp-256 test curve of the standard's worked example (GM/T 0003.2-2012 Annex A.2).
TEST_CURVE = Curve(
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)


def point_from_raw(raw: bytes) -> tuple[int, int]:
    """An uncompressed SEC1 point ``04 || x || y``."""
    assert len(raw) == 65 and raw[0] == 4
    return int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")


def point_to_raw(point: tuple[int, int]) -> bytes:
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")
