#!/usr/bin/env python3
"""Helper of tests/integration/test_archive.sh and bench/bench_archive.sh.

  produce   writes telemetry frames (schema id 1) to a topic and score frames
            (schema id 3) to another, at a set rate, in Kafka transactions (so
            the offsets have gaps: the commit markers), with a few records that
            are not Avro at all; the Kafka timestamp is the event time
  check     reads the topics back from Kafka (read_committed) and the archive
            (S3 via boto3, or a folder) and checks that every (topic,
            partition, offset) of Kafka is in the archive exactly once, that the
            archived values equal Kafka's, and the key layout
  mktopics  creates topics (before the archiver subscribes to them)
  mkbucket  creates a bucket (for a private S3 server)
  metric    prints one value from a Prometheus /metrics page
  recorded-tokens  the web identity tokens moto's STS received (its recorder)
  rmprefix  deletes what a run left under a prefix of the shared bucket

The frames are encoded here by hand (a few lines of struct packing, fast
enough for 200,000 events); the archive is decoded with Python's avro
package, an implementation independent of the archiver.
"""
import argparse
import datetime
import io
import json
import os
import re
import struct
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYMBOLS = ["L", "M", "H"]


# ---- Avro binary, by hand ---------------------------------------------------

def zz(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_str(s):
    b = s.encode()
    return zz(len(b)) + b


def event(i, seed, base_ms, step_ms):
    """The i-th telemetry event of a seeded fleet, as a dict of plain values."""
    m = (i * 2654435761 + seed) % 50
    x = (i * 40503 + seed * 7) % 1000 / 1000.0
    ev = {
        "machine_id": f"M-{m:03d}",
        "ts": base_ms + i * step_ms,
        "air_temperature_k": 298.0 + 2 * x,
        "process_temperature_k": 308.0 + 3 * x,
        "rotational_speed_rpm": 1400.0 + 300 * x,
        "torque_nm": 30.0 + 20 * x,
        "tool_wear_min": float(i % 240),
        "product_type": SYMBOLS[i % 3],
        "tags": {"site": "lyon", "line": str(m % 4)} if i % 5 == 0 else None,
    }
    return ev


def encode_telemetry(ev):
    b = bytearray(b"\x00" + struct.pack(">I", 1))
    b += avro_str(ev["machine_id"]) + zz(ev["ts"])
    for f in ("air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm",
              "tool_wear_min"):
        b += struct.pack("<d", ev[f])
    b += zz(SYMBOLS.index(ev["product_type"]))
    if ev["tags"] is None:
        b += zz(0)
    else:
        b += zz(1) + zz(len(ev["tags"]))
        for k, v in ev["tags"].items():
            b += avro_str(k) + avro_str(v)
        b += zz(0)
    return bytes(b)


def score_of(ev, i):
    return {"machine_id": ev["machine_id"], "ts": ev["ts"], "score": (i % 1000) / 1000.0,
            "model_name": "xgb", "model_version": "v1", "source_partition": i % 4,
            "source_offset": i}


def encode_score(sc):
    b = bytearray(b"\x00" + struct.pack(">I", 3))
    b += avro_str(sc["machine_id"]) + zz(sc["ts"]) + struct.pack("<d", sc["score"])
    b += avro_str(sc["model_name"]) + avro_str(sc["model_version"])
    b += zz(sc["source_partition"]) + zz(sc["source_offset"])
    return bytes(b)


# ---- decoding Kafka's bytes, by hand, for the comparison ---------------------

class Rd:
    def __init__(self, b, pos=0):
        self.b, self.p = b, pos

    def long(self):
        n = shift = 0
        while True:
            c = self.b[self.p]
            self.p += 1
            n |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                return (n >> 1) ^ -(n & 1)

    def str(self):
        n = self.long()
        s = self.b[self.p:self.p + n].decode()
        self.p += n
        return s

    def dbl(self):
        v = struct.unpack_from("<d", self.b, self.p)[0]
        self.p += 8
        return v


def decode_frame(b):
    """Kafka value -> (schema id, dict) for our two schemas, else (None, None)."""
    if b is None or len(b) < 5 or b[0] != 0:
        return None, None
    sid = struct.unpack(">I", b[1:5])[0]
    r = Rd(b, 5)
    try:
        if sid == 1:
            d = {"machine_id": r.str(), "ts": r.long()}
            for f in ("air_temperature_k", "process_temperature_k", "rotational_speed_rpm",
                      "torque_nm", "tool_wear_min"):
                d[f] = r.dbl()
            d["product_type"] = SYMBOLS[r.long()]
            if r.long() == 0:
                d["tags"] = None
            else:
                tags = {}
                while True:
                    n = r.long()
                    if n == 0:
                        break
                    for _ in range(abs(n)):
                        k = r.str()
                        tags[k] = r.str()
                d["tags"] = tags
        elif sid == 3:
            d = {"machine_id": r.str(), "ts": r.long(), "score": r.dbl(), "model_name": r.str(),
                 "model_version": r.str(), "source_partition": r.long(), "source_offset": r.long()}
        else:
            return None, None
    except (IndexError, UnicodeDecodeError, struct.error):
        return None, None
    if r.p != len(b):
        return None, None
    return sid, d


def norm(v):
    """avro turns timestamp-millis into aware datetimes; compare as ms."""
    if isinstance(v, datetime.datetime):
        return int(round(v.timestamp() * 1000))
    return v


# ---- produce -----------------------------------------------------------------

def cmd_produce(a):
    from confluent_kafka import Producer
    base_ms = a.base_ms or (int(time.time() * 1000) - 3 * 3600 * 1000)
    p = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": f"archtest-{os.getpid()}",
                  "linger.ms": 20, "batch.num.messages": 10000, "queue.buffering.max.messages": 200000,
                  "enable.idempotence": True})
    p.init_transactions(30)
    counts = {"telemetry": 0, "scores": 0, "raw": 0}
    t0 = time.time()
    in_txn = 0
    p.begin_transaction()
    for i in range(a.events):
        ev = event(i, a.seed, base_ms, a.step_ms)
        if a.bad_every and i % a.bad_every == a.bad_every - 1:
            value = b"not avro: %d" % i if i % (2 * a.bad_every) else None
            counts["raw"] += 1
        else:
            value = encode_telemetry(ev)
        p.produce(a.topic, key=ev["machine_id"].encode(), value=value, timestamp=ev["ts"])
        counts["telemetry"] += 1
        if a.scores_topic and a.score_every and i % a.score_every == 0:
            p.produce(a.scores_topic, key=ev["machine_id"].encode(),
                      value=encode_score(score_of(ev, i)), timestamp=ev["ts"])
            counts["scores"] += 1
        in_txn += 1
        if in_txn >= a.txn_size:
            p.commit_transaction(60)
            p.begin_transaction()
            in_txn = 0
        if a.rate:
            ahead = (i + 1) / a.rate - (time.time() - t0)
            if ahead > 0.005:
                time.sleep(ahead)
        if i % 1000 == 0:
            p.poll(0)
    p.commit_transaction(60)
    p.flush(60)
    counts["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(counts))


# ---- check -------------------------------------------------------------------

def kafka_records(bootstrap, topic):
    """{(partition, offset): (value bytes, timestamp)} of a topic, read_committed."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"archcheck-{os.getpid()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof = {}, set()
    while len(eof) < len(parts):
        for m in c.consume(10000, timeout=1.0):
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                    continue
                raise SystemExit(f"kafka: {m.error()}")
            out[(m.partition(), m.offset())] = (m.value(), m.timestamp()[1])
    c.close()
    return out


KEY_RE = re.compile(r"^(?:(?P<prefix>.+)/)?(?P<topic>[^/]+)/dt=(?P<dt>\d{4}-\d\d-\d\d)/hour=(?P<hour>\d\d)/"
                    r"partition=(?P<part>\d+)/(?P<first>\d{20})-(?P<last>\d{20})\.avro$")


def archive_objects(a, topic):
    """Yields (key, bytes) of every object under <prefix>/<topic>/."""
    if a.dir:
        root = os.path.join(a.dir, topic)
        for d, _, files in os.walk(root):
            for f in sorted(files):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, a.dir)
                if f.startswith("."):
                    continue  # a temporary of an interrupted write: readers skip it
                with open(path, "rb") as fh:
                    yield rel, fh.read()
    else:
        import boto3
        s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1")
        prefix = (a.prefix + "/" if a.prefix else "") + topic + "/"
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=prefix)
        for page in pages:
            for o in page.get("Contents", []):
                yield o["Key"], s3.get_object(Bucket=a.bucket, Key=o["Key"])["Body"].read()


def check_topic(a, topic, problems):
    import avro.datafile
    import avro.io
    kafka = kafka_records(a.bootstrap, topic)
    seen = {}
    nobj = raw = 0
    for key, body in archive_objects(a, topic):
        m = KEY_RE.match(key)
        if not m or m.group("topic") != topic or (m.group("prefix") or "") != (a.prefix or ""):
            problems.append(f"bad key {key}")
            continue
        nobj += 1
        part, first, last = int(m.group("part")), int(m.group("first")), int(m.group("last"))
        reader = avro.datafile.DataFileReader(io.BytesIO(body), avro.io.DatumReader())
        offsets = []
        for i, rec in enumerate(reader):
            p, o = rec["kafka_partition"], rec["kafka_offset"]
            ts = norm(rec["kafka_timestamp"])
            offsets.append(o)
            if i == 0:
                when = datetime.datetime.fromtimestamp(max(ts, 0) / 1000, datetime.timezone.utc)
                if when.strftime("%Y-%m-%d") != m.group("dt") or when.strftime("%H") != m.group("hour"):
                    problems.append(f"{key}: first record at {when} is not in dt/hour of its key")
            if p != part:
                problems.append(f"{key}: record of partition {p}")
            if (p, o) in seen:
                problems.append(f"{topic}/{p}/{o} archived twice: {seen[(p, o)]} and {key}")
                continue
            seen[(p, o)] = key
            if (p, o) not in kafka:
                problems.append(f"{topic}/{p}/{o} archived but not in Kafka")
                continue
            kv, kts = kafka[(p, o)]
            if kts != ts:
                problems.append(f"{topic}/{p}/{o}: timestamp {ts} != Kafka's {kts}")
            if "error" in rec and "value" in rec and set(rec) >= {"key", "error"}:
                raw += 1
                if rec["value"] != kv:
                    problems.append(f"{topic}/{p}/{o}: raw value differs")
                continue
            sid, want = decode_frame(kv)
            got = {k: norm(v) for k, v in rec.items() if not k.startswith("kafka_")}
            if want != got:
                problems.append(f"{topic}/{p}/{o}: archived {got} != produced {want}")
        reader.close()
        if not offsets or offsets[0] != first or offsets[-1] != last or offsets != sorted(offsets):
            problems.append(f"{key}: offsets {offsets[:1]}..{offsets[-1:]} do not match its name")
    missing = set(kafka) - set(seen)
    for (p, o) in sorted(missing)[:10]:
        problems.append(f"{topic}/{p}/{o} is in Kafka but not in the archive")
    if len(missing) > 10:
        problems.append(f"... {len(missing)} missing in all")
    gaps = 0
    by_part = {}
    for (p, o) in kafka:
        by_part.setdefault(p, []).append(o)
    for offs in by_part.values():
        offs.sort()
        gaps += sum(1 for x, y in zip(offs, offs[1:]) if y != x + 1)
    return {"topic": topic, "kafka_records": len(kafka), "archived": len(seen), "objects": nobj,
            "raw": raw, "offset_gaps": gaps}


def cmd_check(a):
    problems, out = [], []
    for t in a.topics.split(","):
        out.append(check_topic(a, t, problems))
    for o in out:
        print(json.dumps(o))
        if a.min_objects and o["topic"] == (a.min_objects_topic or o["topic"]) and \
                o["objects"] < a.min_objects:
            problems.append(f"{o['topic']}: only {o['objects']} objects")
        if o["kafka_records"] == 0:
            problems.append(f"{o['topic']}: nothing in Kafka")
    for p in problems[:30]:
        print("PROBLEM:", p)
    sys.exit(1 if problems else 0)


def cmd_mktopics(a):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    futs = admin.create_topics([NewTopic(t, a.partitions, 1) for t in a.topics.split(",")])
    for t, f in futs.items():
        f.result(30)


def cmd_recorded_tokens(a):
    """Web identity tokens sent to moto's STS, from its request recorder."""
    import base64
    import urllib.parse
    text = urllib.request.urlopen(a.url + "/moto-api/recorder/download-recording", timeout=5).read()
    seen = []
    for line in text.decode().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        body = r.get("body") or ""
        if r.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        q = urllib.parse.parse_qs(body)
        if q.get("Action") == ["AssumeRoleWithWebIdentity"]:
            seen.append(q.get("WebIdentityToken", [""])[0])
    print(" ".join(seen))


def cmd_rmprefix(a):
    """Deletes every object under a prefix (what a test or benchmark left)."""
    import boto3
    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1")
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=a.bucket, Key=o["Key"])
            n += 1
    print(n)


def cmd_mkbucket(a):
    import boto3
    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=a.bucket)


def cmd_metric(a):
    text = urllib.request.urlopen(a.url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(a.name + " ") or line.startswith(a.name + "{"):
            print(line.rsplit(" ", 1)[1])
            return
    print("")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--scores-topic")
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=0, help="events/s; 0: as fast as possible")
    p.add_argument("--score-every", type=int, default=10)
    p.add_argument("--bad-every", type=int, default=1000)
    p.add_argument("--txn-size", type=int, default=2000)
    p.add_argument("--base-ms", type=int, default=0)
    p.add_argument("--step-ms", type=int, default=50)
    c = sub.add_parser("check")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topics", required=True)
    c.add_argument("--dir")
    c.add_argument("--endpoint")
    c.add_argument("--bucket")
    c.add_argument("--prefix", default="")
    c.add_argument("--min-objects", type=int, default=0)
    c.add_argument("--min-objects-topic", help="the topic --min-objects applies to (default: all)")
    b = sub.add_parser("mkbucket")
    b.add_argument("--endpoint", required=True)
    b.add_argument("--bucket", required=True)
    t = sub.add_parser("mktopics")
    t.add_argument("--bootstrap", required=True)
    t.add_argument("--topics", required=True)
    t.add_argument("--partitions", type=int, default=4)
    d = sub.add_parser("rmprefix")
    d.add_argument("--endpoint", required=True)
    d.add_argument("--bucket", required=True)
    d.add_argument("--prefix", required=True)
    r = sub.add_parser("recorded-tokens")
    r.add_argument("--url", required=True)
    m = sub.add_parser("metric")
    m.add_argument("--url", required=True)
    m.add_argument("--name", required=True)
    a = ap.parse_args()
    {"produce": cmd_produce, "check": cmd_check, "mkbucket": cmd_mkbucket, "metric": cmd_metric,
     "mktopics": cmd_mktopics, "recorded-tokens": cmd_recorded_tokens,
     "rmprefix": cmd_rmprefix}[a.cmd](a)


if __name__ == "__main__":
    main()
