#!/usr/bin/env python3
"""Checks for tests/integration/test_score_eos.sh, on top of score_tool.py.

Transactional topics end in control records (commit/abort markers) that no
consumer ever receives, so score_tool's "read until the high watermark" would
wait forever; here a partition is done at its end-of-partition event, which a
read_committed consumer gets at the last stable offset. Every read uses the
isolation level given with --isolation (default read_committed), so the same
checks can look at what a read_uncommitted reader sees.

  --isolation LEVEL SUBCOMMAND ...   any score_tool subcommand, reading at LEVEL
  --isolation LEVEL dups --scores T --alerts T [--dlq T]
                                     duplicates as JSON: score records per source
                                     offset, alert ids, dead letters per source
  --isolation LEVEL alerts --scores T --alerts T --card JSON [--dedup]
                      [--offline CSV] [--exact-scores] --cooldown MS --resolve-after N
                                     alerts == the uninterrupted state machine's on
                                     the committed scores; unique ids; with
                                     --offline and --exact-scores (or --dedup),
                                     == the uninterrupted offline run's too
  --isolation LEVEL alerts-equal --alerts T --ref T
                                     two runs' alerts equal by id, a redelivery's
                                     repeats of an id dropped (and identical)
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score_tool as st  # noqa: E402
from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402

ISOLATION = "read_committed"


def read_all(bootstrap, topic, headers=False):
    """score_tool.read_all, ending each partition at its EOF event."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "eos-tool-unused",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "isolation.level": ISOLATION})
    marks = st.watermarks(c, topic)
    todo = {p: hi for p, (lo, hi) in marks.items() if hi > lo}
    if not todo:
        c.close()
        return []
    c.assign([TopicPartition(topic, p, marks[p][0]) for p in todo])
    out, deadline = [], time.time() + 120
    while todo and time.time() < deadline:
        for m in c.consume(num_messages=10000, timeout=1.0):
            p = m.partition()
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF and p in todo:
                    if m.offset() >= todo[p] or ISOLATION == "read_committed":
                        del todo[p]  # read_committed: EOF is the last stable offset
                continue
            o = m.offset()
            if p in todo and o < todo[p]:
                rec = (p, o, m.timestamp()[1], m.key(), m.value())
                if headers:
                    rec += (m.headers() or [],)
                out.append(rec)
    c.close()
    if todo:
        raise SystemExit(f"read_all {topic}: timed out with partitions {sorted(todo)} unread")
    return out


def count_dups(keys):
    seen = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    return sum(n - 1 for n in seen.values())


def cmd_dups(a):
    scores = st.load_scores(a.bootstrap, a.scores)
    alerts = [st.decode_alert(v)["id"] for _, _, _, _, v in read_all(a.bootstrap, a.alerts)]
    res = {"isolation": ISOLATION, "scores": len(scores),
           "score_dups": count_dups((d["source_partition"], d["source_offset"]) for d in scores),
           "alerts": len(alerts), "alert_dups": count_dups(alerts)}
    if a.dlq:
        srcs = []
        for _, _, _, _, _, h in read_all(a.bootstrap, a.dlq, headers=True):
            h = dict(h)
            srcs.append((h.get("sentinel.source.partition"), h.get("sentinel.source.offset")))
        res["dead_letters"], res["dlq_dups"] = len(srcs), count_dups(srcs)
    print(json.dumps(res))
    return 0


def cmd_alerts(a):
    """The alerts against the state machine run again, uninterrupted, on the
    committed score records: equal, with unique ids (the alert state survives
    restarts: README, Delivery semantics). With --offline, against the state
    machine on the offline scores too: equal with --exact-scores (a redone
    batch must score as its first attempt did, so every score is checked).
    With --dedup (at-least-once), alerts with the same id (a redelivered
    event's) count once, the first sent, and only the offline comparison is
    made (the score records then hold redelivered duplicates)."""
    thr = json.load(open(a.card))["threshold"]["value"]
    scores = st.load_scores(a.bootstrap, a.scores)
    scores.sort(key=lambda d: (d["source_partition"], d["source_offset"]))
    # a machine's events are one partition's, in offset order
    exp = st.alert_machine([(d["machine_id"], d["ts"], d["score"]) for d in scores], thr,
                           a.cooldown, a.resolve_after)
    got, ids, seen = [], [], set()
    for _, _, _, _, v in read_all(a.bootstrap, a.alerts):
        d = st.decode_alert(v)
        ids.append(d["id"])
        if a.dedup and d["id"] in seen:
            continue
        seen.add(d["id"])
        got.append((d["machine_id"], d["ts"], d["state"]))
    errors = []
    if count_dups(ids) and not a.dedup:
        errors.append(f"{count_dups(ids)} duplicate alert ids")
    if not a.dedup and sorted(got) != sorted(exp):
        errors.append(f"alerts differ from the uninterrupted state machine on the committed scores: "
                      f"{len(got)} sent, {len(exp)} expected; sent only "
                      f"{sorted(set(got) - set(exp))[:3]}, expected only {sorted(set(exp) - set(got))[:3]}")
    info = ""
    if a.offline:
        off = []
        for line in open(a.offline):
            m, ts, sc = line.rstrip("\n").split(",")
            off.append((m, int(ts), float(sc)))
        want = {(m, ts): sc for m, ts, sc in off}
        diffs = [abs(d["score"] - want[(d["machine_id"], d["ts"])]) for d in scores
                 if (d["machine_id"], d["ts"]) in want]
        over = sum(1 for x in diffs if x > 1e-6)
        exp_off = st.alert_machine(off, thr, a.cooldown, a.resolve_after)
        if a.exact_scores and over:
            errors.append(f"{over} scores differ from the offline ones")
        if (a.exact_scores or a.dedup) and sorted(got) != sorted(exp_off):
            errors.append(f"alerts differ from the uninterrupted offline run's: {len(got)} sent, "
                          f"{len(exp_off)} expected; sent only {sorted(set(got) - set(exp_off))[:3]}, "
                          f"expected only {sorted(set(exp_off) - set(got))[:3]}")
        info = (f"; vs an uninterrupted offline run: {over} of {len(diffs)} scores differ "
                f"(max {max(diffs or [0]):.3g}), alerts {len(got)} sent vs {len(exp_off)} offline, "
                f"{len(set(got) ^ set(exp_off))} differ")
    print(f"  {ISOLATION}: {len(ids)} alerts, {len(set(ids))} distinct ids, {len(exp)} from the "
          f"uninterrupted state machine on the committed scores{info}")
    for e in errors[:10]:
        print("   ", e)
    return 1 if errors else 0


def cmd_alerts_equal(a):
    """Two runs' alerts on the same telemetry (ids name the source offset):
    equal as sets of (id, machine, time, state) after dropping the repeats of
    an id that a redelivery sent again; a repeat that differs is an error."""
    def load(topic):
        out, dups, differ = {}, 0, 0
        for _, _, _, _, v in read_all(a.bootstrap, topic):
            d = st.decode_alert(v)
            rec = (d["machine_id"], d["ts"], d["state"])
            if d["id"] in out:
                dups += 1
                differ += out[d["id"]] != rec
                continue
            out[d["id"]] = rec
        return out, dups, differ
    got, dups, differ = load(a.alerts)
    ref, ref_dups, _ = load(a.ref)
    errors = []
    if ref_dups:
        errors.append(f"the reference run has {ref_dups} duplicate ids")
    if differ:
        errors.append(f"{differ} repeated ids with a different alert")
    if got != ref:
        only_got = sorted(set(got.items()) - set(ref.items()))
        only_ref = sorted(set(ref.items()) - set(got.items()))
        errors.append(f"alerts differ: {len(got)} vs {len(ref)} distinct; only here {only_got[:3]}, "
                      f"only in the reference {only_ref[:3]}")
    print(f"  {len(got) + dups} alerts ({dups} repeated ids) vs {len(ref)} in the uninterrupted run")
    for e in errors:
        print("   ", e)
    return 1 if errors else 0


def main():
    global ISOLATION
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "--isolation":
        ISOLATION = argv[1]
        argv = argv[2:]
    st.read_all = read_all
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    if argv and argv[0] == "alerts-equal":
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("--alerts", required=True)
        ap.add_argument("--ref", required=True)
        a = ap.parse_args(argv)
        a.bootstrap = bootstrap
        sys.exit(cmd_alerts_equal(a))
    if argv and argv[0] in ("dups", "alerts"):
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("--scores", required=True)
        ap.add_argument("--alerts", required=True)
        ap.add_argument("--dlq")
        ap.add_argument("--offline")
        ap.add_argument("--card")
        ap.add_argument("--cooldown", type=int, default=600000)
        ap.add_argument("--resolve-after", type=int, default=5)
        ap.add_argument("--dedup", action="store_true",
                        help="at-least-once: an alert id sent again counts once")
        ap.add_argument("--exact-scores", action="store_true", help="every score == the offline one")
        a = ap.parse_args(argv)
        a.bootstrap = bootstrap
        sys.exit(cmd_dups(a) if a.cmd == "dups" else cmd_alerts(a))
    sys.argv = [sys.argv[0]] + argv
    st.main()


if __name__ == "__main__":
    main()
