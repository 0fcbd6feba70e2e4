#!/usr/bin/env python3
"""Writes tests/data/s3/sigv4_cases.json: S3 requests signed by botocore, the
independent reference signer that tests/unit/test_s3_sigv4.c compares our
SigV4 implementation (common/s3_sigv4.c) against.

The date is fixed, so the output is stable; rerun after changing the cases:
    $SN_PY tests/data/s3/gen_sigv4_cases.py > tests/data/s3/sigv4_cases.json
The URL path and query are encoded here with Python's urllib (not with the C
code under test); botocore then canonicalises and signs them.
"""
import datetime
import json
import sys
from urllib.parse import quote

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

DATE = datetime.datetime(2024, 1, 15, 12, 34, 56, tzinfo=datetime.timezone.utc)
AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEBYaCXVzLWVhc3QtMSJHMEUCIQD+example/session+token=="

CASES = [
    dict(name="get simple key", method="GET", key="telemetry/part-0.avro"),
    dict(name="put with md5 and type", method="PUT", key="a b+c=d/ü/€ x.avro",
         headers=[["Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="], ["Content-Type", "avro/binary"]],
         body="hello avro\n"),
    dict(name="initiate multipart", method="POST", key="big file+1.avro", params=[["uploads", ""]],
         headers=[["Content-Type", "avro/binary"]]),
    dict(name="upload part", method="PUT", key="big file+1.avro",
         params=[["uploadId", "VXBsb2FkIElE+/abc=="], ["partNumber", "3"]],
         headers=[["Content-MD5", "XUFAKrxLKna5cZ2REBfFkg=="]], body="x" * 100),
    dict(name="complete multipart", method="POST", key="big file+1.avro",
         params=[["uploadId", "VXBsb2FkIElE+/abc=="]],
         headers=[["Content-Type", "application/xml"]],
         body='<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"a54357aff0632cce46d942af68356b38"</ETag></Part></CompleteMultipartUpload>'),
    dict(name="abort multipart", method="DELETE", key="big file+1.avro",
         params=[["uploadId", "VXBsb2FkIElE+/abc=="]]),
    dict(name="list v2 with continuation", method="GET", key=None,
         params=[["prefix", "telemetry/dt=2024-01-15/hour=12/partition=3/00000000000000000100-"],
                 ["list-type", "2"], ["max-keys", "1000"], ["encoding-type", "url"],
                 ["continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="]]),
    dict(name="list v2 unicode prefix start-after", method="GET", key=None,
         params=[["start-after", "données/é+x=y"], ["list-type", "2"], ["prefix", "données/ é"]]),
    dict(name="session token virtual hosted", method="GET", key="telemetry/x.avro",
         virtual=True, region="eu-west-1", token=True),
    dict(name="head", method="HEAD", key="telemetry/dt=2024-01-15/hour=12/partition=0/00000000000000000000-00000000000000000999.avro"),
    dict(name="reserved characters", method="PUT", key="k~!'()*&$@,;:?#[] %.avro", body=""),
    dict(name="no path normalisation", method="GET", key="a//b/./c/../d"),
    dict(name="query sort by encoded name", method="GET", key="q",
         params=[["b", "2"], ["a b", "1"], ["a+b", "3"], ["A", "x y"], ["a", "ü"], ["response-content-type", "text/plain; charset=utf-8"]]),
    dict(name="delete unicode key token", method="DELETE", key="日本/キー.avro", token=True),
    dict(name="header value whitespace", method="PUT", key="ws", body="1",
         headers=[["Content-Type", "  text/plain;   charset=utf-8  "]]),
]


def build(case):
    bucket = "sentinel"
    region = case.get("region", "us-east-1")
    if case.get("virtual"):
        host = f"{bucket}.s3.{region}.amazonaws.com"
        path = "/" + (quote(case["key"], safe="/") if case["key"] is not None else "")
    else:
        host = "127.0.0.1:19000"
        path = "/" + bucket + ("/" + quote(case["key"], safe="/") if case["key"] is not None else "")
    params = case.get("params", [])
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    body = case.get("body", "").encode("utf-8")
    req = AWSRequest(method=case["method"], url=url, data=body,
                     headers={k: v for k, v in case.get("headers", [])})
    creds = Credentials(AK, SK, TOKEN if case.get("token") else None)
    auth = botocore.auth.S3SigV4Auth(creds, "s3", region)
    orig = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: DATE
    try:
        auth.add_auth(req)
        authorization = req.headers["Authorization"]
        del req.headers["Authorization"]  # it is not part of what was signed
        canonical = auth.canonical_request(req)
    finally:
        botocore.auth.get_current_datetime = orig
    return dict(name=case["name"], method=case["method"], host=host,
                virtual=bool(case.get("virtual")), bucket=bucket, key=case["key"],
                region=region, params=params, headers=case.get("headers", []),
                body=case.get("body", ""), token=TOKEN if case.get("token") else "",
                amz_date=req.headers["X-Amz-Date"],
                payload_sha256=req.headers["X-Amz-Content-SHA256"],
                canonical_request=canonical, authorization=authorization)


def main():
    out = dict(generator="tests/data/s3/gen_sigv4_cases.py", botocore=botocore.__version__,
               access_key=AK, secret_key=SK, cases=[build(c) for c in CASES])
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
