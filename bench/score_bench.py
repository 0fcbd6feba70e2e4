#!/usr/bin/env python3
"""Measurement side of bench/bench_score.sh.

  window --pid P --redis URL --scores TOPIC --start N0 --end N1
      Waits until TOPIC holds N0 score records, samples the scorer's CPU
      (utime + stime of every thread, /proc/P/stat) and the Redis server's
      (INFO cpu used_cpu_user + used_cpu_sys), waits until it holds N1, samples
      again, and prints one JSON object: events, seconds, events/s, scorer and
      Redis CPU microseconds per event, the scorer's peak RSS (VmHWM), and
      Redis's INFO commandstats for the update script over the window (calls
      per event, microseconds per call inside Redis).

  floor --topic TOPIC --events N [--warmup-s W]
      The Kafka transport's share of the latency: a plain librdkafka consumer
      (confluent-kafka, no group) reads TOPIC as it is produced and takes, per
      record, its receive time minus the record's timestamp (the producer's
      send). Prints the percentiles after the first W seconds, overall and
      per second of send time (p99 of each second), so that stalls of the
      whole machine show up here as well as in the scorer's latencies.

Kafka and Redis are read with the test helpers of
tests/integration/score_tool.py (confluent-kafka, raw RESP).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import score_tool as st  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def proc_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def redis_cpu(r):
    info = r.call("INFO", "cpu").decode()
    vals = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
    return float(vals["used_cpu_user"]) + float(vals["used_cpu_sys"])


def redis_commandstats(r):
    """{command: (calls, usec)} from INFO commandstats."""
    out = {}
    for line in r.call("INFO", "commandstats").decode().split("\r\n"):
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            kv = dict(x.split("=", 1) for x in rest.split(","))
            out[name] = (int(kv["calls"]), int(kv["usec"]))
    return out


def count(c, topic):
    return sum(hi - lo for lo, hi in st.watermarks(c, topic).values())


def wait_for(c, topic, n, deadline, interval):
    while True:
        got = count(c, topic)
        if got >= n:
            return got, time.time()
        if time.time() >= deadline:
            raise SystemExit(f"timed out at {got} of {n} records in {topic}")
        time.sleep(interval)


def cmd_window(a):
    c = st.consumer(a.bootstrap)
    r = st.Resp(a.redis)
    deadline = time.time() + a.timeout
    n0, t0 = wait_for(c, a.scores, a.start, deadline, a.interval)
    r.call("CONFIG", "RESETSTAT")
    cpu0, rcpu0 = proc_cpu(a.pid), redis_cpu(r)
    n1, t1 = wait_for(c, a.scores, a.end, deadline, a.interval)
    cpu1, rcpu1 = proc_cpu(a.pid), redis_cpu(r)
    stats = redis_commandstats(r)
    ev = n1 - n0
    out = {"events": ev, "seconds": round(t1 - t0, 3), "events_per_s": round(ev / (t1 - t0)),
           "scorer_cpu_us": round((cpu1 - cpu0) / ev * 1e6, 2),
           "redis_cpu_us": round((rcpu1 - rcpu0) / ev * 1e6, 2),
           "scorer_cpu_s": round(cpu1 - cpu0, 2), "vmhwm_kb": proc_hwm_kb(a.pid)}
    # Redis's side of it: script calls per event and their time inside Redis
    # (the rest of its CPU is the event loop, reading and writing sockets)
    calls, usec = stats.get("evalsha", (0, 0))
    if calls:
        out.update({"redis_evalsha_per_event": round(calls / ev, 3),
                    "redis_evalsha_usec_per_call": round(usec / calls, 2),
                    "redis_evalsha_us_per_event": round(usec / ev, 2)})
    c.close()
    print(json.dumps(out))
    return 0


def pct(v, f):
    return v[min(len(v) - 1, max(0, int(len(v) * f + 0.999999) - 1))]


def cmd_floor(a):
    from confluent_kafka import TopicPartition
    c = st.consumer(a.bootstrap)
    parts = []
    deadline = time.time() + 60
    while not parts and time.time() < deadline:
        parts = st.partitions(c, a.topic)
        time.sleep(0.1)
    c.assign([TopicPartition(a.topic, p, 0) for p in parts])
    lat, got, deadline = [], 0, time.time() + a.timeout
    while got < a.events and time.time() < deadline:
        m = c.poll(0.1)  # one at a time: a batch call would wait to fill the batch
        if m is None or m.error():
            continue
        lat.append((m.timestamp()[1], time.time() * 1000 - m.timestamp()[1]))
        got += 1
    c.close()
    if not lat:
        print("{}")
        return 1
    t0 = min(t for t, _ in lat) + a.warmup_s * 1000
    v = sorted(l for t, l in lat if t >= t0)
    per = {}
    for t, l in lat:
        if t >= t0:
            per.setdefault(int((t - t0) // 1000), []).append(l)
    p99s = [round(pct(sorted(x), 0.99)) for _, x in sorted(per.items())]
    print(json.dumps({"events": len(v), "p50_ms": round(pct(v, 0.5), 1), "p99_ms": round(pct(v, 0.99), 1),
                      "p999_ms": round(pct(v, 0.999), 1), "max_ms": round(v[-1], 1),
                      "p99_ms_per_second": p99s}))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("window")
    s.add_argument("--pid", type=int, required=True); s.add_argument("--redis", required=True)
    s.add_argument("--scores", required=True); s.add_argument("--start", type=int, required=True)
    s.add_argument("--end", type=int, required=True); s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--interval", type=float, default=0.1)
    s = sub.add_parser("floor")
    s.add_argument("--topic", required=True); s.add_argument("--events", type=int, required=True)
    s.add_argument("--warmup-s", type=float, default=0); s.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    sys.exit({"window": cmd_window, "floor": cmd_floor}[a.cmd](a))


if __name__ == "__main__":
    main()
