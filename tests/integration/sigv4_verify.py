#!/usr/bin/env python3
"""Recomputes the SigV4 signature of captured requests with botocore and
compares it with the one memfit (through libcurl) sent.
Usage: sigv4_verify.py CAPTURE.jsonl ENDPOINT ACCESS_KEY SECRET TOKEN REGION
Exit 0 when every request verifies, 1 otherwise, 77 without botocore."""
import json
import re
import sys

try:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    print("SKIPPED: botocore is not installed")
    sys.exit(77)


def main():
    capture, endpoint, key, secret, token, region = sys.argv[1:7]
    ok = True
    n = 0
    for line in open(capture):
        req = json.loads(line)
        headers = {k.lower(): v for k, v in req["headers"]}
        m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
                     r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
                     headers.get("authorization", ""))
        if not m:
            print("no SigV4 Authorization header:", headers.get("authorization"))
            return 1
        cred_key, date, cred_region, signed, signature = m.groups()
        signed = signed.split(";")
        if cred_key != key or cred_region != region:
            print("wrong credential scope:", cred_key, cred_region)
            ok = False
        for required in ("host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"):
            if required not in signed:
                print("header not signed:", required)
                ok = False
        aws_req = AWSRequest(method=req["method"], url=endpoint + req["path"],
                             headers={h: headers[h] for h in signed})
        aws_req.context["timestamp"] = headers["x-amz-date"]
        auth = S3SigV4Auth(Credentials(key, secret, token), "s3", region)
        canonical = auth.canonical_request(aws_req)
        expected = auth.signature(auth.string_to_sign(aws_req, canonical), aws_req)
        if expected != signature:
            print("signature mismatch for", req["path"])
            print("canonical request:\n" + canonical)
            ok = False
        else:
            print("signature ok:", req["method"], req["path"])
        n += 1
    if n == 0:
        print("no request captured")
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
