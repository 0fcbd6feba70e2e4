#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_decode into tests/fuzz/corpus_decode/.

Each seed is one Confluent frame (0x00, 4-byte big-endian schema id, Avro
binary) against the fixture schemas in tests/data/codec/ids: valid frames of
every writer schema, and one frame per error class. Stdlib only; rerun after
changing the fixtures:  python3 tests/fuzz/gen_corpus.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_decode")


def varint(n):
    z = (n << 1) ^ (n >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return varint(len(b)) + b


def d(x):
    return struct.pack("<d", x)


def f(x):
    return struct.pack("<f", x)


def hdr(schema_id):
    return b"\x00" + struct.pack(">I", schema_id)


def tags(pairs):
    if pairs is None:
        return varint(0)
    body = b"".join(s(k) + s(v) for k, v in pairs)
    return varint(1) + (varint(len(pairs)) + body if pairs else b"") + varint(0)


def v1(mid="press-017", ts=1700000000123, vals=(298.1, 308.6, 1551.0, 42.8, 0.0), pt=1,
       tg=(("site", "plant-3"),)):
    return hdr(1) + s(mid) + varint(ts) + b"".join(d(v) for v in vals) + varint(pt) + tags(
        None if tg is None else list(tg))


def v2():
    body = v1()[5:]
    return hdr(4) + body + d(3.25) + varint(1) + d(77.0)


def extra(chain=2):
    out = hdr(5) + varint(2) + d(1.5) + d(2.5) + varint(0) + s("x-1")
    out += b"FW01" + s(b"raw\x00bytes") + varint(-1) + varint(len(s("c") + varint(3)))
    out += s("c") + varint(3) + varint(0) + b"\x01" + f(0.5) + varint(-7) + varint(42)
    out += b"".join(d(10 + i) for i in range(5)) + varint(2)
    for i in range(chain):
        out += varint(1) + varint(i)
    return out + varint(0) + varint(0)


def nullable(ts_null=True):
    out = hdr(8) + varint(1) + s("m-1")
    out += varint(0) if ts_null else varint(1) + varint(5)
    return out + b"".join(d(1) for _ in range(5)) + varint(0) + varint(0)


def press(sid=10):
    if sid == 10:
        return (hdr(10) + s("P-9") + varint(1700000000456000) + f(12.5) + varint(99) + d(-3.75)
                + varint(-5) + b"\x01" + varint(2) + varint(1) + d(41.0) + varint(1) + s("site")
                + s("b") + varint(0))
    if sid == 11:
        return (hdr(11) + s("P-1") + varint(5000) + f(2.5) + varint(123456) + varint(-40)
                + varint(7) + b"\x00" + varint(1))
    return (hdr(13) + varint(1) + s("line") + s("4") + varint(0) + d(55.5) + varint(1) + b"\x01"
            + varint(3) + f(0.25) + varint(99) + f(1.0) + varint(2000000) + s("P-2"))


def alert():
    feats = varint(2) + s("torque_nm_mean") + d(40.0) + d(0.3) + s("rpm_std") + d(3.0) + d(0.1)
    return (hdr(2) + s("telemetry/3/1234") + s("press-017") + varint(1700000000123) + d(0.93)
            + d(0.7) + s("ai4i-xgb") + s("12") + varint(0) + feats + varint(0))


def score():
    return (hdr(3) + s("press-017") + varint(1700000000123) + d(0.25) + s("m") + s("v1")
            + varint(7) + varint(1 << 40))


SEEDS = {
    "ok_v1_tags": v1(),
    "ok_v1_notags": v1(tg=None),
    "ok_v1_16tags": v1(tg=[("k%d" % i, "v") for i in range(16)]),
    "ok_v2": v2(),
    "ok_extra_types": extra(),
    "ok_nullable": nullable(False),
    "ok_enum_x": hdr(12) + s("m") + varint(1) + b"".join(d(1) for _ in range(5)) + varint(3)
    + varint(0),
    "ok_press": press(10),
    "ok_press_old": press(11),
    "ok_press_reordered": press(13),
    "ok_alert": alert(),
    "ok_score": score(),
    "bad_magic": b"\x01" + v1()[1:],
    "bad_magic_json": b'{"machine_id":"m"}',
    "unknown_schema": hdr(99) + v1()[5:],
    "incompatible_schema": hdr(6) + s("m") + varint(1) + b"".join(d(1) for _ in range(5)) + s("M"),
    "truncated": v1()[:20],
    "truncated_header": b"\x00\x00\x00",
    "trailing_bytes": v1() + b"\x00\x42",
    "bad_length_huge": hdr(1) + varint(64 << 20),
    "bad_length_negative": hdr(1) + varint(-1) + b"abcdefgh",
    "bad_value_nan": v1(vals=(float("nan"), 1, 1, 1, 1)),
    "bad_value_inf": v1(vals=(1, 1, 1, float("inf"), 1)),
    "bad_value_enum": v1(pt=3),
    "bad_value_union": v1(tg=None)[:-1] + varint(2),
    "bad_value_varint": hdr(1) + s("m") + b"\xff" * 11 + b"\x00",
    "bad_key_empty": v1(mid=""),
    "bad_key_utf8": v1(mid=b"\xff\xfe"),
    "bad_key_long": v1(mid="i" * 64),
    "missing_field": nullable(True),
    "too_large_tags": v1(tg=[("k%d" % i, "v") for i in range(17)]),
    "too_large_chain": extra(chain=40),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
