#!/usr/bin/env python3
"""Independent SDK-HMAC-SHA256 vectors for kpsd's signer (tests/unit/test_aksk_signer.cpp).

Written from the algorithm in docs/vendor-api.md ("AK/SK signing"), not from kpsd's C++: it
only uses Python's hmac, hashlib and urllib. Regenerate with:
python3 aksk_vectors.py > aksk_vectors.json
"""
import hashlib
import hmac
import json
from urllib.parse import quote, unquote


def enc(s: str) -> str:
    # Unreserved characters A-Za-z0-9-_.~ stay; everything else becomes %XX (upper case).
    return quote(s, safe="-_.~")


def canonical_uri(path: str) -> str:
    segments = [enc(unquote(seg)) for seg in path.split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        k, _, v = part.partition("=")
        pairs.append((enc(unquote(k)), enc(unquote(v))))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def sign(case):
    headers = {k.lower(): v.strip() for k, v in case["headers"].items()}
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{headers[n]}\n" for n in names)
    signed_headers = ";".join(names)
    body = case["body"].encode("utf-8")
    canonical = "\n".join([
        case["method"],
        canonical_uri(case["path"]),
        canonical_query(case["query"]),
        canonical_headers,
        signed_headers,
        hashlib.sha256(body).hexdigest(),
    ])
    to_sign = "\n".join([
        "SDK-HMAC-SHA256",
        headers["x-sdk-date"],
        hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    ])
    signature = hmac.new(case["sk"].encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return dict(case,
                canonical_request=canonical,
                string_to_sign=to_sign,
                authorization=f"SDK-HMAC-SHA256 Access={case['ak']}, SignedHeaders={signed_headers}, Signature={signature}")


PID = "0123456789abcdef0123456789abcdef"
CASES = [
    {
        "name": "disassociate with a JSON body",
        "method": "POST", "path": f"/v3/{PID}/keypairs/disassociate", "query": "",
        "headers": {"Content-Type": "application/json", "Host": "kms.cn-north-4.myhuaweicloud.com",
                    "X-Project-Id": PID, "X-Sdk-Date": "20261125T120000Z"},
        "body": '{"server":{"id":"d76baba7-ef09-40a2-87ff-3eafec0696e7"}}',
        "ak": "HPUAEXAMPLEAK0000001", "sk": "exampleSecretKey0000000000000000000000001",
    },
    {
        "name": "body with non-ASCII characters",
        "method": "POST", "path": f"/v3/{PID}/keypairs/disassociate", "query": "",
        "headers": {"Content-Type": "application/json", "Host": "127.0.0.1:8443",
                    "X-Project-Id": PID, "X-Sdk-Date": "20260101T000001Z"},
        "body": '{"server":{"id":"srv-1","auth":{"type":"password","key":"p\u00e4ss w\u00f6rd \u5bc6\u7801 \u2713"}}}',
        "ak": "AK2", "sk": "sk-with-\u00fcmlaut",
    },
    {
        "name": "path that needs percent-encoding",
        "method": "GET", "path": f"/v3/{PID}/tasks/task%20id%2Bplus%C3%A9", "query": "",
        "headers": {"Host": "localhost:9443", "X-Project-Id": PID, "X-Sdk-Date": "20261231T235959Z"},
        "body": "",
        "ak": "AK3", "sk": "SK3",
    },
    {
        "name": "query keys sorted and encoded",
        "method": "GET", "path": f"/v3/{PID}/failed-tasks", "query": "offset=100&limit=100&a%20b=c d",
        "headers": {"Host": "kms.cn-north-4.myhuaweicloud.com", "X-Project-Id": PID,
                    "X-Sdk-Date": "20261125T093000Z"},
        "body": "",
        "ak": "AK4", "sk": "SK4",
    },
    {
        # A temporary key pair (STS, an ECS agency): the security token is sent as
        # X-Security-Token and signed with the other headers (the vendor's SDKs add it before
        # signing). Real tokens are a few kilobytes of base64-like text.
        "name": "temporary AK/SK with a security token",
        "method": "POST", "path": f"/v3/{PID}/keypairs/disassociate", "query": "",
        "headers": {"Content-Type": "application/json", "Host": "kms.cn-north-4.myhuaweicloud.com",
                    "X-Project-Id": PID,
                    "X-Security-Token": "gQpjbi1ub3J0aC00" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 60 + "==",
                    "X-Sdk-Date": "20261130T101500Z"},
        "body": '{"server":{"id":"d76baba7-ef09-40a2-87ff-3eafec0696e7"}}',
        "ak": "HSTTEMPORARYAK000001", "sk": "temporarySecretKey00000000000000000000001",
    },
]

if __name__ == "__main__":
    print(json.dumps([sign(c) for c in CASES], indent=2, ensure_ascii=False))
