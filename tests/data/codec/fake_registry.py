#!/usr/bin/env python3
"""PROTOCOL FIXTURE, NOT A SCHEMA REGISTRY.

A tiny stand-in that speaks the few Confluent Schema Registry endpoints the
codec uses, so tests/unit/test_schema_registry.c can pin the HTTP client's
behaviour (paths, headers, auth, caching, error classes, timeouts) without
Java or Kafka. It proves nothing about compatibility with the real thing;
tests/integration/test_schema_registry.sh runs against a real registry.

  GET  /schemas/ids/{id}              from the ids manifest of --dir
  POST /subjects/{subject}/versions   register (same schema text -> same id)
  POST /subjects/{subject}            look up
  GET  /subjects                      subjects registered so far
  GET  /stats                         {"path": count} of the requests so far

Special ids: 77 answers after 3 s (timeouts), 500..599 answer HTTP 500,
600 answers schemaType PROTOBUF. With --user/--password every request needs
basic auth. Prints the port it listens on (127.0.0.1, --port 0 = any) and
flushes, then serves until killed.
"""
import argparse
import base64
import collections
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CT = "application/vnd.schemaregistry.v1+json"


def load_ids(directory):
    ids = {}
    with open(os.path.join(directory, "ids")) as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            num, name = line.split()
            with open(os.path.join(directory, name)) as sf:
                ids[int(num)] = sf.read()
    return ids


class State:
    def __init__(self, ids):
        self.lock = threading.Lock()
        self.ids = ids
        self.subjects = collections.defaultdict(list)  # subject -> [id]
        self.stats = collections.Counter()
        self.next_id = 1000

    def canonical(self, text):
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))

    def find(self, text):
        want = self.canonical(text)
        for num, schema in self.ids.items():
            try:
                if self.canonical(schema) == want:
                    return num
            except ValueError:
                pass
        return None


def make_handler(state, auth):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", CT)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if not auth:
                return True
            want = "Basic " + base64.b64encode(auth.encode()).decode()
            if self.headers.get("Authorization") == want:
                return True
            self.send(401, {"error_code": 40101, "message": "Unauthorized"})
            return False

        def do_GET(self):
            with state.lock:
                state.stats[self.path] += 1
            if self.path == "/stats":
                with state.lock:
                    return self.send(200, dict(state.stats))
            if not self.authorized():
                return
            if self.path == "/subjects":
                with state.lock:
                    return self.send(200, sorted(state.subjects))
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                num = int(parts[2])
                if num == 77:
                    time.sleep(3)
                if 500 <= num < 600:
                    return self.send(500, {"error_code": 50001, "message": "backend down"})
                if num == 600:
                    return self.send(200, {"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})
                with state.lock:
                    schema = state.ids.get(num)
                if schema is None:
                    return self.send(404, {"error_code": 40403, "message": "Schema %d not found" % num})
                return self.send(200, {"schema": schema})
            self.send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

        def do_POST(self):
            with state.lock:
                state.stats[self.path] += 1
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if not self.authorized():
                return
            if not self.headers.get("Content-Type", "").startswith("application/vnd.schemaregistry"):
                return self.send(415, {"error_code": 415, "message": "Unsupported Media Type"})
            try:
                schema = json.loads(body)["schema"]
                json.loads(schema)
            except (ValueError, KeyError, TypeError):
                return self.send(422, {"error_code": 42201, "message": "Invalid schema"})
            parts = self.path.strip("/").split("/")
            if len(parts) not in (2, 3) or parts[0] != "subjects":
                return self.send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
            subject = parts[1]
            with state.lock:
                num = state.find(schema)
                if len(parts) == 3 and parts[2] == "versions":
                    if num is None:
                        num = state.next_id
                        state.next_id += 1
                        state.ids[num] = schema
                    if num not in state.subjects[subject]:
                        state.subjects[subject].append(num)
                    return self.send(200, {"id": num})
                if num is None or num not in state.subjects.get(subject, []):
                    return self.send(404, {"error_code": 40403, "message": "Schema not found"})
                version = state.subjects[subject].index(num) + 1
                return self.send(200, {"subject": subject, "version": version, "id": num,
                                       "schema": schema})

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    auth = "%s:%s" % (args.user, args.password) if args.user else None
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(State(load_ids(args.dir)), auth))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
