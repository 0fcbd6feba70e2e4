#!/usr/bin/env python3
"""Independent checks for tests/integration/test_score_challenger.sh.

Reads the topics with confluent-kafka and decodes the frames by hand (through
score_tool.py's helpers, not Sentinel's codec), replays the alert state machine
from tools/offline_score's scores, parses /metrics text, and computes the
canary hash again from its documented definition.

Subcommands (each prints a summary and exits 0 when its check passes):
  hash ID...     the canary hash of each id (FNV-1a 64, fmix64, / 2**64)
  shadow ...     shadow run: one production record and one shadow record per
                 event, each equal to its version's offline score; alerts from
                 production only; the agreement metrics equal the topics'
  canary ...     canary run: the challenger serves exactly the machines the
                 hash selects, scores and alerts name the version that served
"""
import argparse
import json
import sys
import urllib.request

from score_tool import alert_machine, consumer, decode_alert, load_scores, read_all, watermarks

M64 = 2 ** 64


def canary_hash(machine_id):
    """scorer.canary.fraction's hash, as consumers/scorer_challenger.h defines it."""
    h = 14695981039346656037
    for b in machine_id.encode():
        h = ((h ^ b) * 1099511628211) % M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) % M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) % M64
    h ^= h >> 33
    return h / M64  # exact power-of-two scaling of a correctly rounded quotient


def load_offline(path):
    out = []
    for line in open(path):
        m, ts, s = line.rstrip("\n").split(",")
        out.append((m, int(ts), float(s)))
    return out


def threshold(card_path):
    return json.load(open(card_path))["threshold"]["value"]


def metrics(url):
    """{name or name{labels}: value} from the Prometheus text at url."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def telemetry_count(bootstrap, topic):
    c = consumer(bootstrap)
    n = sum(hi - lo for lo, hi in watermarks(c, topic).values())
    c.close()
    return n


def by_source(records, errors, what):
    """{(partition, offset): record}; a source twice is an error."""
    out = {}
    for d in records:
        src = (d["source_partition"], d["source_offset"])
        if src in out:
            errors.append(f"{what}: telemetry {src} has two records")
        out[src] = d
    return out


def check_scores(records, offline, errors, what):
    """Every record equals the offline score of its event (<= 1e-6)."""
    want = {(m, ts): s for m, ts, s in offline}
    worst, identical = 0.0, 0
    for d in records:
        s = want.get((d["machine_id"], d["ts"]))
        if s is None:
            errors.append(f"{what}: {d['machine_id']}@{d['ts']} is not in the offline stream")
            continue
        diff = abs(d["score"] - s)
        worst, identical = max(worst, diff), identical + (d["score"] == s)
        if diff > 1e-6 and len(errors) < 20:
            errors.append(f"{what}: {d['machine_id']}@{d['ts']}: {d['score']!r} online, {s!r} offline")
    return worst, identical


def read_alerts(bootstrap, topic):
    return [decode_alert(v) for _, _, _, _, v in read_all(bootstrap, topic)]


def cmd_hash(a):
    for m in a.ids:
        print(f"{m} {canary_hash(m)!r}")
    return 0


def cmd_shadow(a):
    errors = []
    n = telemetry_count(a.bootstrap, a.telemetry)
    prod = load_scores(a.bootstrap, a.scores)
    shadow = load_scores(a.bootstrap, a.shadow)
    ps, ss = by_source(prod, errors, "scores"), by_source(shadow, errors, "shadow")
    if len(ps) != n or len(prod) != n:
        errors.append(f"scores: {len(prod)} records, {len(ps)} sources, {n} telemetry records")
    if len(ss) != n or len(shadow) != n:
        errors.append(f"shadow: {len(shadow)} records, {len(ss)} sources, {n} telemetry records")
    if set(ps) != set(ss):
        errors.append("the two topics cover different telemetry records")
    for what, recs, v in (("scores", prod, a.vprod), ("shadow", shadow, a.vchal)):
        bad = [d for d in recs if d["model_version"] != v]
        if bad:
            errors.append(f"{what}: {len(bad)} records not of version {v}, e.g. {bad[0]['model_version']}")
    wp, ip = check_scores(prod, load_offline(a.offline_prod), errors, "scores")
    wc, ic = check_scores(shadow, load_offline(a.offline_chal), errors, "shadow")

    # alerts: production's state machine only, from production's offline scores
    tp, tc = threshold(a.card_prod), threshold(a.card_chal)
    alerts = read_alerts(a.bootstrap, a.alerts)
    exp = alert_machine(load_offline(a.offline_prod), tp, a.cooldown, a.resolve_after)
    got = [(d["machine_id"], d["ts"], d["state"]) for d in alerts]
    if sorted(got) != sorted(exp):
        errors.append(f"alerts: {len(got)} online, {len(exp)} from production's offline scores")
    bad = [d for d in alerts if d["model_version"] != a.vprod or d["threshold"] != tp]
    if bad:
        errors.append(f"{len(bad)} alerts not from production: {bad[0]['model_version']}")

    # agreement, from the two topics, against /metrics
    agree = disagree = 0
    diff_sum = 0.0
    for src, d in ps.items():
        s = ss.get(src)
        if s is None:
            continue
        if (d["score"] >= tp) == (s["score"] >= tc):
            agree += 1
        else:
            disagree += 1
        diff_sum += abs(d["score"] - s["score"])
    m = metrics(a.metrics)
    got_m = (m.get("sentinel_challenger_compared_total"),
             m.get('sentinel_challenger_decisions_total{agreement="agree"}', 0.0),
             m.get('sentinel_challenger_decisions_total{agreement="disagree"}', 0.0),
             m.get("sentinel_challenger_score_diff_count"))
    if got_m != (n, agree, disagree, n):
        errors.append(f"/metrics compared, agree, disagree, histogram count = {got_m}; "
                      f"topics: {n}, {agree}, {disagree}, {n}")
    hsum = m.get("sentinel_challenger_score_diff_sum", -1)
    if abs(hsum - diff_sum) > 1e-6 * max(1.0, diff_sum):
        errors.append(f"/metrics |diff| sum {hsum}, topics {diff_sum}")
    if m.get(f'sentinel_challenger_info{{version="{a.vchal}",mode="shadow"}}') != 1:
        errors.append("sentinel_challenger_info does not name the challenger in shadow mode")
    print(f"  {n} events: {len(prod)} production records (version {a.vprod}, {ip} bit-identical to "
          f"offline, max diff {wp:.3g}), {len(shadow)} shadow records (version {a.vchal}, {ic} "
          f"bit-identical, max diff {wc:.3g}); alerts {len(got)} = {len(exp)} replayed, all version "
          f"{a.vprod}; decisions agree {agree}, disagree {disagree}, mean |diff| {diff_sum / max(n, 1):.4f} "
          f"(= /metrics)")
    for e in errors[:12]:
        print("   ", e)
    return 1 if errors else 0


def cmd_canary(a):
    errors = []
    n = telemetry_count(a.bootstrap, a.telemetry)
    recs = load_scores(a.bootstrap, a.scores)
    src = by_source(recs, errors, "scores")
    if len(src) != n or len(recs) != n:
        errors.append(f"scores: {len(recs)} records, {len(src)} sources, {n} telemetry records")
    machines = sorted({d["machine_id"] for d in recs})
    want = {m for m in machines if canary_hash(m) < a.fraction}
    served = {}
    for d in recs:
        served.setdefault(d["machine_id"], set()).add(d["model_version"])
    mixed = [m for m, v in served.items() if len(v) != 1]
    if mixed:
        errors.append(f"{len(mixed)} machines served by both versions, e.g. {mixed[:3]}")
    got = {m for m, v in served.items() if v == {a.vchal}}
    other = {v for vs in served.values() for v in vs} - {a.vprod, a.vchal}
    if other:
        errors.append(f"records of unexpected versions {sorted(other)}")
    if got != want:
        errors.append(f"challenger machines: {len(got)} online, {len(want)} by the hash; online only "
                      f"{sorted(got - want)[:3]}, hash only {sorted(want - got)[:3]}")
    share = len(want) / max(len(machines), 1)
    if abs(share - a.fraction) > a.tolerance:
        errors.append(f"the hash picks {share:.3f} of the machines for fraction {a.fraction}")
    offline = {a.vprod: load_offline(a.offline_prod), a.vchal: load_offline(a.offline_chal)}
    worst = {}
    for v in (a.vprod, a.vchal):
        worst[v] = check_scores([d for d in recs if d["model_version"] == v], offline[v], errors,
                                f"version {v}")

    # alerts: each machine's state machine on its serving version's scores
    thr = {a.vprod: threshold(a.card_prod), a.vchal: threshold(a.card_chal)}
    exp = []
    for v, ms in ((a.vchal, want), (a.vprod, set(machines) - want)):
        exp += [(m, ts, st, v) for m, ts, st in
                alert_machine([e for e in offline[v] if e[0] in ms], thr[v], a.cooldown, a.resolve_after)]
    alerts = read_alerts(a.bootstrap, a.alerts)
    got_a = [(d["machine_id"], d["ts"], d["state"], d["model_version"]) for d in alerts]
    if sorted(got_a) != sorted(exp):
        errors.append(f"alerts: {len(got_a)} online, {len(exp)} replayed per serving version; online "
                      f"only {sorted(set(got_a) - set(exp))[:2]}, replay only {sorted(set(exp) - set(got_a))[:2]}")
    bad = [d for d in alerts if d["threshold"] != thr.get(d["model_version"]) or not d["top_features"]]
    if bad:
        errors.append(f"{len(bad)} alerts with another version's threshold or no features")
    ch_alerts = sum(1 for x in got_a if x[3] == a.vchal)
    if ch_alerts == 0:
        errors.append("no alert from the challenger: the check has no teeth on this data")
    nshadow = telemetry_count(a.bootstrap, a.shadow)
    if nshadow:
        errors.append(f"canary wrote {nshadow} shadow records")
    m = metrics(a.metrics)
    nch = sum(1 for d in recs if d["model_version"] == a.vchal)
    if m.get("sentinel_canary_events_total") != nch or m.get("sentinel_challenger_compared_total") != nch:
        errors.append(f"/metrics canary events {m.get('sentinel_canary_events_total')}, compared "
                      f"{m.get('sentinel_challenger_compared_total')}; topic {nch}")
    print(f"  {n} events of {len(machines)} machines: {len(got)} machines ({share:.1%}) served by "
          f"version {a.vchal} = the hash's {len(want)} for fraction {a.fraction}; {nch} records of "
          f"version {a.vchal} (max diff to offline {worst[a.vchal][0]:.3g}), {n - nch} of version "
          f"{a.vprod} (max diff {worst[a.vprod][0]:.3g}); alerts {len(got_a)} = {len(exp)} replayed, "
          f"{ch_alerts} naming version {a.vchal}; no shadow records")
    for e in errors[:12]:
        print("   ", e)
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("hash"); s.add_argument("ids", nargs="+")
    for name in ("shadow", "canary"):
        s = sub.add_parser(name)
        for f in ("telemetry", "scores", "shadow", "alerts", "offline-prod", "offline-chal",
                  "card-prod", "card-chal", "vprod", "vchal", "metrics"):
            s.add_argument("--" + f, required=True)
        s.add_argument("--cooldown", type=int, required=True)
        s.add_argument("--resolve-after", type=int, required=True)
        if name == "canary":
            s.add_argument("--fraction", type=float, required=True)
            s.add_argument("--tolerance", type=float, default=0.08)
    a = ap.parse_args()
    if a.bootstrap is None:
        import os
        a.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    sys.exit({"hash": cmd_hash, "shadow": cmd_shadow, "canary": cmd_canary}[a.cmd](a))


if __name__ == "__main__":
    main()
