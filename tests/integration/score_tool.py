#!/usr/bin/env python3
"""Independent checks for tests/integration/test_score.sh and bench/bench_score.sh.

Reads Kafka with confluent-kafka (not Sentinel's consumer), decodes the score
and alert frames by hand from the Avro spec of schemas/score.avsc and
schemas/failure_alert.avsc (not Sentinel's codec), re-runs the alert state
machine from the offline scores, talks to Redis with a few lines of RESP (not
hiredis), and writes poison records byte by byte. Sentinel's own code is only
the thing under test.

Subcommands (each prints a summary and exits 0 when its check passes):
  create-topics TOPIC...           4 partitions each (--config KEY=VALUE for topic configs)
  count TOPIC                      records in TOPIC (sum of high - low watermarks)
  wait-count TOPIC N [--timeout S] wait until TOPIC holds at least N records
  wait-committed --group --topic   wait until a group has committed the end of TOPIC
  compare ...                      test 1: scores and alerts equal the offline run
  coverage ...                     every telemetry offset scored (at least / exactly once)
  redis-dump URL PREFIX OUT        the feature-state hashes under PREFIX, as JSON
  redis-compare A.json B.json      equal except the version token 'v' and the undo record 'u'
  redis-del URL PATTERN            delete the test's keys
  poison ...                       produce one record of every bad-input class
  check-dlq ...                    test 3: each poison record dead-lettered, intact
  latency ...                      bench: telemetry -> score record latency percentiles
"""
import argparse
import json
import math
import socket
import struct
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition, KafkaException

# ---------------------------------------------------------------- Kafka


def consumer(bootstrap):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "score-tool-unused",
                     "enable.auto.commit": False, "enable.partition.eof": False,
                     "auto.offset.reset": "earliest", "fetch.max.bytes": 52428800})


def partitions(c, topic, timeout=10.0):
    """Partition ids of topic, [] when it does not exist (yet)."""
    try:
        md = c.list_topics(topic, timeout=timeout)
    except KafkaException:
        return []
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return []
    return sorted(t.partitions)


def watermarks(c, topic, tries=50):
    """{partition: (low, high)}; retried while a new topic's leaders settle."""
    for attempt in range(tries):
        try:
            out = {}
            for p in partitions(c, topic):
                out[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            return out
        except KafkaException:
            if attempt == tries - 1:
                raise
            time.sleep(0.2)


def read_all(bootstrap, topic, headers=False):
    """Every record of topic up to the high watermarks taken at the start, as
    (partition, offset, timestamp_ms, key, value[, headers])."""
    c = consumer(bootstrap)
    marks = watermarks(c, topic)
    todo = {p: hi for p, (lo, hi) in marks.items() if hi > lo}
    if not todo:
        c.close()
        return []
    c.assign([TopicPartition(topic, p, marks[p][0]) for p in todo])
    out, deadline = [], time.time() + 120
    while todo and time.time() < deadline:
        for m in c.consume(num_messages=10000, timeout=1.0):
            if m.error():
                continue
            p, o = m.partition(), m.offset()
            if p in todo and o < todo[p]:
                rec = (p, o, m.timestamp()[1], m.key(), m.value())
                if headers:
                    rec += (m.headers() or [],)
                out.append(rec)
                if o + 1 >= todo[p]:
                    del todo[p]
    c.close()
    if todo:
        raise SystemExit(f"read_all {topic}: timed out with partitions {sorted(todo)} unread")
    return out


# ---------------------------------------------------------------- Avro by hand


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def long(self):
        shift = acc = 0
        while True:
            byte = self.b[self.i]
            self.i += 1
            acc |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        return (acc >> 1) ^ -(acc & 1)

    def double(self):
        (v,) = struct.unpack_from("<d", self.b, self.i)
        self.i += 8
        return v

    def string(self):
        n = self.long()
        s = self.b[self.i:self.i + n].decode()
        self.i += n
        return s


def frame(value, want_id):
    if value is None or len(value) < 5 or value[0] != 0:
        raise ValueError("not a Confluent frame")
    (sid,) = struct.unpack(">I", value[1:5])
    if sid != want_id:
        raise ValueError(f"schema id {sid}, expected {want_id}")
    return Reader(value[5:])


def decode_score(value):
    r = frame(value, 3)
    d = {"machine_id": r.string(), "ts": r.long(), "score": r.double(), "model_name": r.string(),
         "model_version": r.string(), "source_partition": r.long(), "source_offset": r.long()}
    if r.i != len(r.b):
        raise ValueError("trailing bytes in a score frame")
    return d


def decode_alert(value):
    r = frame(value, 2)
    d = {"id": r.string(), "machine_id": r.string(), "ts": r.long(), "score": r.double(),
         "threshold": r.double(), "model_name": r.string(), "model_version": r.string(),
         "state": ["OPEN", "RENOTIFY", "RESOLVED"][r.long()], "top_features": []}
    while True:
        n = r.long()
        if n == 0:
            break
        if n < 0:
            n = -n
            r.long()  # block size
        for _ in range(n):
            d["top_features"].append((r.string(), r.double(), r.double()))
    if r.i != len(r.b):
        raise ValueError("trailing bytes in an alert frame")
    return d


def zz(v):
    v = (v << 1) ^ (v >> 63)
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_str(s):
    b = s.encode() if isinstance(s, str) else s
    return zz(len(b)) + b


def telemetry_body(machine, ts, air=300.0, proc=310.0, rpm=1500.0, torque=40.0, wear=10.0,
                   ptype=0, tags=None):
    """Avro binary of schemas/telemetry.avsc, written field by field."""
    b = avro_str(machine) + zz(ts)
    for v in (air, proc, rpm, torque, wear):
        b += struct.pack("<d", v)
    b += zz(ptype)
    if tags is None:
        b += zz(0)  # union branch null
    else:
        b += zz(1) + zz(len(tags))
        for k, v in tags.items():
            b += avro_str(k) + avro_str(v)
        b += zz(0)
    return b


def telemetry_frame(body, schema_id=1, magic=0):
    return bytes([magic]) + struct.pack(">I", schema_id) + body


# ---------------------------------------------------------------- checks


def load_scores(bootstrap, topic):
    """Score records as dicts, with the score record's own partition, offset
    and timestamp."""
    out = []
    for p, o, ts, k, v in read_all(bootstrap, topic):
        d = decode_score(v)
        d["_p"], d["_o"], d["_ts"] = p, o, ts
        if k is None or k.decode() != d["machine_id"]:
            raise SystemExit(f"score record {p}/{o}: key {k!r} is not its machine {d['machine_id']}")
        out.append(d)
    return out


def alert_machine(events, thr, cooldown, resolve_after):
    """The alert state machine of consumers/alerting.c, written again from its
    contract: events are (machine, ts, score) in each machine's order."""
    open_, out = {}, []
    for m, ts, s in events:
        st = open_.get(m)
        if s >= thr:
            if st is None:
                open_[m] = {"last": ts, "below": 0}
                out.append((m, ts, "OPEN"))
            else:
                st["below"] = 0
                if ts - st["last"] >= cooldown:
                    st["last"] = ts
                    out.append((m, ts, "RENOTIFY"))
        elif st is not None:
            st["below"] += 1
            if st["below"] >= resolve_after:
                del open_[m]
                out.append((m, ts, "RESOLVED"))
    return out


def cmd_compare(a):
    card = json.load(open(a.card))
    thr = card["threshold"]["value"]
    offline = []
    for line in open(a.offline):
        m, ts, s = line.rstrip("\n").split(",")
        offline.append((m, int(ts), float(s)))
    want = {(m, ts): s for m, ts, s in offline}
    errors = []
    if len(want) != len(offline):
        errors.append("offline stream has repeated (machine, ts) pairs: cannot key by them")
    scores = load_scores(a.bootstrap, a.scores)
    by_event, by_src = {}, {}
    for d in scores:
        k = (d["machine_id"], d["ts"])
        src = (d["source_partition"], d["source_offset"])
        if k in by_event:
            errors.append(f"event {k} scored twice")
        if src in by_src:
            errors.append(f"telemetry {src} scored twice")
        by_event[k], by_src[src] = d, k
        if d["model_version"] != a.version or d["model_name"] != a.model:
            errors.append(f"{k}: model {d['model_name']} {d['model_version']}")
    missing = [k for k in want if k not in by_event]
    extra = [k for k in by_event if k not in want]
    maxdiff, over, identical = 0.0, 0, 0
    for k, s in want.items():
        d = by_event.get(k)
        if d is None:
            continue
        diff = abs(d["score"] - s)
        identical += d["score"] == s
        maxdiff = max(maxdiff, diff)
        if diff > 1e-6:
            over += 1
            if over <= 5:
                errors.append(f"{k}: score {d['score']!r} online, {s!r} offline")
    if missing:
        errors.append(f"{len(missing)} events not scored, e.g. {missing[:3]}")
    if extra:
        errors.append(f"{len(extra)} scored events not in the stream, e.g. {extra[:3]}")
    # telemetry offsets: every one of them has its score
    c = consumer(a.bootstrap)
    tel = sum(hi - lo for lo, hi in watermarks(c, a.telemetry).values())
    c.close()
    if tel != len(want) or len(by_src) != tel:
        errors.append(f"telemetry topic holds {tel} records, {len(by_src)} distinct offsets scored")

    # alerts: the state machine again, from the offline scores
    exp = alert_machine(offline, thr, a.cooldown, a.resolve_after)
    got = []
    explained, explained_equal = None, 0
    if a.explain:
        explained = {}
        for line in open(a.explain):
            m, ts, top = line.rstrip("\n").split(",", 2)
            explained[(m, int(ts))] = [(n, struct.unpack("f", struct.pack("f", float(c)))[0])
                                       for n, c in (x.rsplit(":", 1) for x in top.split("|"))]
    for p, o, ts, k, v in read_all(a.bootstrap, a.alerts):
        d = decode_alert(v)
        got.append((d["machine_id"], d["ts"], d["state"]))
        ev = (d["machine_id"], d["ts"])
        sc = by_event.get(ev)
        if sc is None:
            errors.append(f"alert for an unscored event {ev}")
            continue
        if d["id"] != f"{a.telemetry}/{sc['source_partition']}/{sc['source_offset']}":
            errors.append(f"alert id {d['id']} does not name {ev}'s record")
        if d["threshold"] != thr or abs(d["score"] - want.get(ev, -9)) > 1e-6:
            errors.append(f"alert {d['id']}: threshold {d['threshold']} score {d['score']}")
        if d["model_version"] != a.version or not d["top_features"]:
            errors.append(f"alert {d['id']}: version {d['model_version']}, {len(d['top_features'])} features")
        if explained is not None:
            # the scorer explains a batch's alerts in one XGBoost call; the
            # offline run explains each row alone: same names, same float32
            # contributions, same order
            mine = [(n, struct.unpack("f", struct.pack("f", c))[0]) for n, _, c in d["top_features"]]
            if mine != explained.get(ev):
                errors.append(f"alert {d['id']}: top features {mine}, offline {explained.get(ev)}")
            else:
                explained_equal += 1
    if len(got) != len(set(got)):
        errors.append(f"{len(got) - len(set(got))} duplicate alerts")
    if sorted(got) != sorted(exp):
        only_on = sorted(set(got) - set(exp))[:3]
        only_off = sorted(set(exp) - set(got))[:3]
        errors.append(f"alerts differ: {len(got)} online, {len(exp)} offline; online only {only_on}, "
                      f"offline only {only_off}")
    states = {s: sum(1 for x in got if x[2] == s) for s in ("OPEN", "RENOTIFY", "RESOLVED")}
    caught, failures = 0, []
    if a.failures:  # how the alerts did (information, not a check)
        raised = {}
        for m, ts, state in got:
            if state != "RESOLVED":
                raised.setdefault(m, []).append(ts)
        for line in open(a.failures):
            m, ts, _ = line.strip().split(",")
            failures.append((m, int(ts)))
            caught += any(int(ts) - a.horizon <= t <= int(ts) for t in raised.get(m, []))
    print(f"  {len(scores)} score records for {len(want)} events, {identical} bit-identical to the offline "
          f"score, max |online - offline| = {maxdiff:.3g}; "
          f"alerts {len(got)} online = {len(exp)} offline (open {states['OPEN']}, renotify "
          f"{states['RENOTIFY']}, resolved {states['RESOLVED']}); threshold {thr:.6f}; "
          f"{caught} of {len(failures)} failures had an alert in the {a.horizon // 60000} min before them")
    if explained is not None:
        print(f"  {explained_equal} of {len(got)} alerts explained exactly as the offline per-row SHAP")
    for e in errors[:10]:
        print("   ", e)
    return 1 if errors else 0


def cmd_coverage(a):
    """Every telemetry offset (minus the dead-lettered ones) has a score
    record; with --exactly-once, exactly one; with --versions, every record
    names one of them."""
    c = consumer(a.bootstrap)
    marks = watermarks(c, a.telemetry)
    c.close()
    skip = set()
    if a.skip:
        for r in json.load(open(a.skip)):
            skip.add((r["partition"], r["offset"]))
    scores = load_scores(a.bootstrap, a.scores)
    seen = {}
    for d in scores:
        src = (d["source_partition"], d["source_offset"])
        seen[src] = seen.get(src, 0) + 1
    errors, expected, missing = [], 0, []
    for p, (lo, hi) in sorted(marks.items()):
        for o in range(lo, hi):
            if (p, o) in skip:
                if (p, o) in seen:
                    errors.append(f"dead-lettered record {p}/{o} was scored")
                continue
            expected += 1
            if (p, o) not in seen:
                missing.append((p, o))
    extra = [s for s in seen if s[0] not in marks or not marks[s[0]][0] <= s[1] < marks[s[0]][1]]
    dups = sum(n - 1 for n in seen.values())
    if missing:
        errors.append(f"{len(missing)} telemetry records never scored, e.g. {missing[:5]}")
    if extra:
        errors.append(f"{len(extra)} score records for offsets that do not exist, e.g. {extra[:5]}")
    if a.exactly_once and dups:
        errors.append(f"{dups} duplicate score records")
    versions = {}
    for d in scores:
        versions[d["model_version"]] = versions.get(d["model_version"], 0) + 1
    if a.versions:
        allowed = set(a.versions.split(","))
        bad = {v: n for v, n in versions.items() if v not in allowed}
        if bad:
            errors.append(f"score records of unregistered versions: {bad}")
    if a.min_versions and len(versions) < a.min_versions:
        errors.append(f"only versions {sorted(versions)} scored; expected at least {a.min_versions}")
    if a.expect and expected != a.expect:
        errors.append(f"{expected} telemetry records to score, expected {a.expect}")
    attributed = ""
    if a.offline:
        checked = equal = 0
        for spec in a.offline:
            v, path = spec.split("=", 1)
            off = {}
            for line in open(path):
                m, ts, sc = line.rstrip("\n").split(",")
                off[(m, int(ts))] = float(sc)
            for d in scores:
                if d["model_version"] != v:
                    continue
                checked += 1
                want = off.get((d["machine_id"], d["ts"]))
                if want is not None and abs(want - d["score"]) <= 1e-6:
                    equal += 1
                elif checked - equal <= 5:
                    errors.append(f"{d['machine_id']} {d['ts']}: version {v} scored {d['score']!r}, "
                                  f"offline {want!r}")
        if equal != checked:
            errors.append(f"{checked - equal} of {checked} scores differ from their version's offline score")
        attributed = f"; {equal} of {checked} equal their version's offline score"
    runs = ""
    if a.runs:  # version changes along each partition, in source offset order
        per = {}
        for d in scores:
            per.setdefault(d["source_partition"], []).append((d["source_offset"], d["model_version"]))
        changes = 0
        for p, lst in per.items():
            lst.sort()
            changes += sum(1 for i in range(1, len(lst)) if lst[i][1] != lst[i - 1][1])
        runs = f", {changes} version changes along the partitions"
    print(f"  {expected} telemetry records, {len(scores)} score records, {len(missing)} unscored, "
          f"{dups} duplicates; by model version {dict(sorted(versions.items()))}{runs}{attributed}")
    for e in errors[:10]:
        print("   ", e)
    return 1 if errors else 0


def cmd_wait_count(a):
    c = consumer(a.bootstrap)
    deadline, n = time.time() + a.timeout, 0
    while True:
        n = sum(hi - lo for lo, hi in watermarks(c, a.topic).values())
        if n >= a.n or time.time() >= deadline:
            break
        time.sleep(a.interval)
    c.close()
    print(n)
    return 0 if n >= a.n else 1


def cmd_create_topics(a):
    """Creates the topics (partitions each, replication 1) so that a scorer
    started before its producer finds its input at once."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    cfg = dict(kv.split("=", 1) for kv in a.config)
    futs = admin.create_topics([NewTopic(t, a.partitions, 1, config=cfg) for t in a.topics],
                               operation_timeout=30)
    for t, f in futs.items():
        try:
            f.result(30)
        except KafkaException as e:
            if e.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS
                print(f"  create {t}: {e}")
                return 1
    c = consumer(a.bootstrap)
    for t in a.topics:  # wait until every partition has a leader
        watermarks(c, t)
    c.close()
    return 0


def cmd_wait_committed(a):
    """Waits until group has committed the end of every partition of topic
    (its consumer is done with everything produced so far)."""
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group, "enable.auto.commit": False})
    deadline, behind = time.time() + a.timeout, None
    while True:
        marks = watermarks(c, a.topic)
        try:
            com = c.committed([TopicPartition(a.topic, p) for p in marks], timeout=10)
            behind = sum(max(0, marks[tp.partition][1] - max(tp.offset, marks[tp.partition][0]))
                         for tp in com)
        except KafkaException:
            behind = None
        if behind == 0 or time.time() >= deadline:
            break
        time.sleep(a.interval)
    c.close()
    print(f"  group {a.group}: {behind} records of {a.topic} not committed")
    return 0 if behind == 0 else 1


def cmd_count(a):
    c = consumer(a.bootstrap)
    print(sum(hi - lo for lo, hi in watermarks(c, a.topic).values()))
    c.close()
    return 0


# ---------------------------------------------------------------- Redis


class Resp:
    """A minimal RESP2 client: enough for SCAN and HGETALL, binary-safe."""

    def __init__(self, url):
        if url.startswith("unix://"):
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(url[len("unix://"):])
        else:
            hostport = url[len("redis://"):].split("/")[0]
            host, _, port = hostport.rpartition(":")
            self.s = socket.create_connection((host or "127.0.0.1", int(port or 6379)))
        self.f = self.s.makefile("rb")

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for x in args:
            x = x if isinstance(x, bytes) else str(x).encode()
            out += b"$%d\r\n%s\r\n" % (len(x), x)
        self.s.sendall(out)
        return self.reply()

    def reply(self):
        line = self.f.readline()[:-2]
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"bad reply {line!r}")


def redis_state(url, prefix):
    r = Resp(url)
    keys, cursor = [], b"0"
    while True:
        cursor, batch = r.call("SCAN", cursor, "MATCH", prefix + ":*", "COUNT", 1000)
        keys += batch
        if cursor == b"0":
            break
    state = {}
    for k in keys:
        if k.endswith(b":alert") or b":alert-decided:" in k:
            continue  # the scorer's alert state (strings), not a feature state
        flat = r.call("HGETALL", k)
        h = {flat[i].decode(): flat[i + 1].hex() for i in range(0, len(flat), 2)}
        state[k.decode()[len(prefix):]] = h  # ":{machine}:layout"
    return state


def cmd_redis_dump(a):
    state = redis_state(a.url, a.prefix)
    json.dump(state, open(a.out, "w"), sort_keys=True)
    print(f"  {len(state)} state hashes under {a.prefix}, {sum(len(h) for h in state.values())} fields")
    return 0 if state else 1


def cmd_redis_del(a):
    """Deletes the keys under a pattern of prefixes (the test's leftovers)."""
    r = Resp(a.url)
    cursor, n = b"0", 0
    while True:
        cursor, batch = r.call("SCAN", cursor, "MATCH", a.pattern, "COUNT", 1000)
        if batch:
            n += r.call("DEL", *batch)
        if cursor == b"0":
            break
    print(f"  deleted {n} keys matching {a.pattern}")
    return 0


def cmd_redis_compare(a):
    x, y = json.load(open(a.a)), json.load(open(a.b))
    errors = []
    if set(x) != set(y):
        errors.append(f"keys differ: {sorted(set(x) ^ set(y))[:5]}")
    fields = diff_fields = 0
    for k in sorted(set(x) & set(y)):
        # 'v' is a token per write; 'u' undoes the last call, which depends on
        # how the stream was cut into batches
        hx = {f: v for f, v in x[k].items() if f not in ("v", "u")}
        hy = {f: v for f, v in y[k].items() if f not in ("v", "u")}
        fields += len(hx)
        if hx != hy:
            d = sorted(f for f in set(hx) | set(hy) if hx.get(f) != hy.get(f))
            diff_fields += len(d)
            if len(errors) < 5:
                errors.append(f"{k}: fields {d[:6]} differ")
    print(f"  {len(x)} vs {len(y)} state hashes, {fields} fields compared (all but 'v' and 'u'), "
          f"{diff_fields} differ")
    for e in errors:
        print("   ", e)
    return 1 if errors else 0


# ---------------------------------------------------------------- poison


def poison_records(machines):
    """(class, expected schema id, key, value) for every bad-input class the
    decoder names, each built from a valid body so that exactly one thing is
    wrong."""
    m = machines[0]
    good = telemetry_body(m, 1767225600000)
    ok = telemetry_frame(good)
    nan_body = avro_str(m) + zz(1767225600000) + struct.pack("<d", 300.0) + struct.pack("<d", math.nan)
    nan_body += struct.pack("<ddd", 1500.0, 40.0, 10.0) + zz(0) + zz(0)
    inf_body = nan_body.replace(struct.pack("<d", math.nan), struct.pack("<d", math.inf))
    huge_len = zz(1 << 40) + b"x" * 8 + good[len(avro_str(m)):]
    neg_len = zz(-5) + good[len(avro_str(m)):]
    many_tags = telemetry_body(m, 1767225600000, tags={f"k{i}": "v" for i in range(40)})
    long_tag = telemetry_body(m, 1767225600000, tags={"site": "x" * 200})
    after_key = good[len(avro_str(m)):]          # the time field onwards
    after_ts = after_key[len(zz(1767225600000)):]  # the sensor fields onwards
    return [
        ("bad_magic", -1, m, telemetry_frame(good, magic=1)),  # no framing, so no schema id
        ("bad_magic", -1, m, b"{\"machine_id\": \"json, not avro\"}"),
        ("unknown_schema", 999, m, telemetry_frame(good, schema_id=999)),
        ("incompatible_schema", 3, m, telemetry_frame(good, schema_id=3)),
        ("truncated", 1, m, ok[:len(ok) - 20]),
        ("truncated", -1, m, b"\x00\x00"),
        ("truncated", -1, m, b""),
        ("truncated", -1, m, None),  # a tombstone: no value at all
        ("trailing_bytes", 1, m, ok + b"\x00\x07"),
        ("bad_length", 1, m, telemetry_frame(huge_len)),
        ("bad_length", 1, m, telemetry_frame(neg_len)),
        ("bad_value", 1, m, telemetry_frame(nan_body)),
        ("bad_value", 1, m, telemetry_frame(inf_body)),
        ("bad_value", 1, m, telemetry_frame(good[:-2] + zz(7) + zz(0))),  # enum index 7 of 3
        ("bad_value", 1, m, telemetry_frame(telemetry_body(m, -5))),      # negative timestamp
        ("bad_key", 1, "", telemetry_frame(telemetry_body("", 1767225600000))),
        ("bad_key", 1, m, telemetry_frame(telemetry_body("a\x01b", 1767225600000))),
        ("bad_key", 1, m, telemetry_frame(telemetry_body("m" * 64, 1767225600000))),
        ("bad_key", 1, m, telemetry_frame(avro_str(b"\xff\xfe") + good[len(avro_str(m)):])),
        ("too_large", 1, m, telemetry_frame(many_tags)),
        ("too_large", 1, m, telemetry_frame(long_tag)),
        # schema 4 (the test's copy of telemetry.avsc with a nullable key and time)
        ("missing_field", 4, m, telemetry_frame(zz(0) + zz(1) + after_key, schema_id=4)),   # null key
        ("missing_field", 4, m, telemetry_frame(zz(1) + avro_str(m) + zz(0) + after_ts, schema_id=4)),  # null ts
        ("bad_magic", -1, None, b"\x05"),  # no key either
    ]


def cmd_poison(a):
    """Produces the poison records, each keyed by a fleet machine (so they land
    among its good events), interleaved copies rounds times; writes what was
    sent, with the partition and offset the broker gave, to OUT."""
    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    machines = a.machines.split(",")
    sent, recs = [], []
    for r in range(a.rounds):
        mach = [machines[(r * 7 + i) % len(machines)] for i in range(3)]
        recs += poison_records(mach)
    for i, (cls, sid, key, value) in enumerate(recs):
        out = []

        def cb(err, msg, out=out):
            out.append((err, msg.partition(), msg.offset()))

        p.produce(a.topic, value=value, key=key.encode() if key is not None else None, on_delivery=cb)
        sent.append({"class": cls, "schema_id": sid, "key": key,
                     "value": None if value is None else value.hex(), "_report": out})
        p.poll(0)
    if p.flush(30) != 0:
        print("  poison: not all records delivered")
        return 1
    rows = []
    for s in sent:
        err, part, off = s.pop("_report")[0]
        if err is not None:
            print(f"  poison: delivery failed: {err}")
            return 1
        s["partition"], s["offset"] = part, off
        rows.append(s)
    json.dump(rows, open(a.out, "w"), indent=0)
    classes = sorted({r["class"] for r in rows})
    print(f"  {len(rows)} poison records of {len(classes)} classes: {', '.join(classes)}")
    return 0


def cmd_check_dlq(a):
    sent = json.load(open(a.sent))
    want = {(r["partition"], r["offset"]): r for r in sent}
    got = {}
    errors = []
    for p, o, ts, k, v, hdrs in read_all(a.bootstrap, a.dlq, headers=True):
        h = {}
        for name, val in hdrs:
            h[name] = val.decode() if val is not None else None
        try:
            src = (int(h["sentinel.source.partition"]), int(h["sentinel.source.offset"]))
        except (KeyError, ValueError):
            errors.append(f"dlq {p}/{o}: no source headers ({sorted(h)})")
            continue
        if src in got:
            errors.append(f"{src} dead-lettered twice")
        got[src] = (k, v, h)
    by_class = {}
    for src, r in want.items():
        if src not in got:
            errors.append(f"{r['class']} record {src} not dead-lettered")
            continue
        k, v, h = got[src]
        exp_v = None if r["value"] is None else bytes.fromhex(r["value"])
        exp_k = None if r["key"] is None else r["key"].encode()
        if (v or b"") != (exp_v or b"") or (k or b"") != (exp_k or b""):
            errors.append(f"{src} ({r['class']}): key or value bytes changed")
        if h.get("sentinel.error.class") != r["class"]:
            errors.append(f"{src}: class {h.get('sentinel.error.class')!r}, expected {r['class']!r} "
                          f"({h.get('sentinel.error.message')})")
        if h.get("sentinel.source.topic") != a.telemetry:
            errors.append(f"{src}: source topic {h.get('sentinel.source.topic')!r}")
        if h.get("sentinel.schema.id") != str(r["schema_id"]):
            errors.append(f"{src} ({r['class']}): schema id {h.get('sentinel.schema.id')!r}, "
                          f"expected {r['schema_id']}")
        if not h.get("sentinel.error.message"):
            errors.append(f"{src}: empty error message")
        by_class[r["class"]] = by_class.get(r["class"], 0) + 1
    unexpected = [s for s in got if s not in want]
    if unexpected:
        errors.append(f"{len(unexpected)} good records dead-lettered, e.g. {unexpected[:3]}")
    print(f"  {len(got)} dead letters for {len(want)} poison records; by class "
          f"{dict(sorted(by_class.items()))}")
    if a.show:
        seen = set()
        for src, r in sorted(want.items()):
            if src in got and r["class"] not in seen:
                seen.add(r["class"])
                print(f"    {r['class']:20s} {got[src][2].get('sentinel.error.message')}")
    for e in errors[:10]:
        print("   ", e)
    return 1 if errors else 0


# ---------------------------------------------------------------- latency


def cmd_latency(a):
    """Send-to-score latency per event: the telemetry record's timestamp (its
    producer's create time, i.e. the send) against the score record's (the
    broker's append time when the scores topic has
    message.timestamp.type=LogAppendTime, else the scorer's create time),
    joined on the score record's source partition/offset. Events sent in the
    first --warmup-s seconds are left out. Duplicates (none expected) count
    once, first score wins."""
    tel = {(p, o): ts for p, o, ts, k, v in read_all(a.bootstrap, a.telemetry)}
    if tel and a.warmup_s:
        t0 = min(tel.values()) + a.warmup_s * 1000
        tel = {k: ts for k, ts in tel.items() if ts >= t0}
    lat = {}
    for d in load_scores(a.bootstrap, a.scores):
        src = (d["source_partition"], d["source_offset"])
        if src in tel and src not in lat:
            lat[src] = d["_ts"] - tel[src]
    v = sorted(lat.values())
    if not v:
        print("  no latencies")
        return 1
    q = lambda v, f: v[min(len(v) - 1, int(math.ceil(f * len(v))) - 1)]
    t0 = min(tel.values())
    per = {}
    for src, l in lat.items():
        per.setdefault((tel[src] - t0) // 1000, []).append(l)
    res = {"events": len(v), "p50_ms": q(v, 0.50), "p90_ms": q(v, 0.90), "p99_ms": q(v, 0.99),
           "p999_ms": q(v, 0.999), "max_ms": v[-1], "missing": len(tel) - len(v),
           "p99_ms_per_second": [q(sorted(x), 0.99) for _, x in sorted(per.items())]}
    print(json.dumps(res))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("count"); s.add_argument("topic")
    s = sub.add_parser("wait-count"); s.add_argument("topic"); s.add_argument("n", type=int)
    s.add_argument("--timeout", type=float, default=120); s.add_argument("--interval", type=float, default=0.2)
    s = sub.add_parser("create-topics"); s.add_argument("topics", nargs="+")
    s.add_argument("--partitions", type=int, default=4)
    s.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="topic config")
    s = sub.add_parser("wait-committed"); s.add_argument("--group", required=True); s.add_argument("--topic", required=True)
    s.add_argument("--timeout", type=float, default=120); s.add_argument("--interval", type=float, default=0.5)
    s = sub.add_parser("compare")
    for f in ("scores", "alerts", "telemetry", "offline", "card", "version"):
        s.add_argument("--" + f, required=True)
    s.add_argument("--model", default="sentinel"); s.add_argument("--failures")
    s.add_argument("--explain", help="offline_score --explain-out: each alert's top features must equal it")
    s.add_argument("--horizon", type=int, default=600000, help="ms before a failure that an alert counts")
    s.add_argument("--cooldown", type=int, required=True); s.add_argument("--resolve-after", type=int, required=True)
    s = sub.add_parser("coverage")
    s.add_argument("--telemetry", required=True); s.add_argument("--scores", required=True)
    s.add_argument("--skip"); s.add_argument("--exactly-once", action="store_true")
    s.add_argument("--versions"); s.add_argument("--min-versions", type=int, default=0)
    s.add_argument("--expect", type=int, default=0); s.add_argument("--runs", action="store_true")
    s.add_argument("--offline", action="append", default=[], metavar="VERSION=FILE",
                   help="offline scores of a version: each record of that version must equal them")
    s = sub.add_parser("redis-dump"); s.add_argument("url"); s.add_argument("prefix"); s.add_argument("out")
    s = sub.add_parser("redis-compare"); s.add_argument("a"); s.add_argument("b")
    s = sub.add_parser("redis-del"); s.add_argument("url"); s.add_argument("pattern")
    s = sub.add_parser("poison"); s.add_argument("--topic", required=True); s.add_argument("--machines", required=True)
    s.add_argument("--rounds", type=int, default=1); s.add_argument("--out", required=True)
    s = sub.add_parser("check-dlq"); s.add_argument("--dlq", required=True); s.add_argument("--sent", required=True)
    s.add_argument("--telemetry", required=True); s.add_argument("--show", action="store_true")
    s = sub.add_parser("latency"); s.add_argument("--telemetry", required=True); s.add_argument("--scores", required=True)
    s.add_argument("--warmup-s", type=float, default=0)
    a = ap.parse_args()
    if a.bootstrap is None:
        import os
        a.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    fn = {"create-topics": cmd_create_topics, "wait-committed": cmd_wait_committed, "count": cmd_count, "wait-count": cmd_wait_count, "compare": cmd_compare,
          "coverage": cmd_coverage, "redis-dump": cmd_redis_dump, "redis-compare": cmd_redis_compare, "redis-del": cmd_redis_del,
          "poison": cmd_poison, "check-dlq": cmd_check_dlq, "latency": cmd_latency}[a.cmd]
    sys.exit(fn(a))


if __name__ == "__main__":
    main()
