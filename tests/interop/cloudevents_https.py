"""HTTPS interop with a client nobody here wrote: the official CloudEvents
Python SDK (cloudevents 2.x) builds one structured and one binary event and
`requests` posts them to inlet over TLS, trusting only the test's CA
(verify=CA). A request that does not trust the CA must fail with an
SSLError before anything is sent.

Usage: python cloudevents_https.py https://HOST:PORT CA.pem
Prints one JSON line with what it checked; exits non-zero on any mismatch.
"""

import json
import sys

import requests
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def main():
    base, ca = sys.argv[1], sys.argv[2]
    fmt = JSONFormat()
    sent = [
        ("py-tls-s1", to_structured(CloudEvent(
            {"id": "py-tls-s1", "source": "/python/sdk/tls", "type": "com.example.py.tls",
             "datacontenttype": "application/json"}, {"over": "https"}), fmt)),
        ("py-tls-b1", to_binary(CloudEvent(
            {"id": "py-tls-b1", "source": "/python/sdk/tls", "type": "com.example.py.tls",
             "datacontenttype": "application/json"}, {"mode": "binary"}), fmt)),
    ]
    accepted = []
    with requests.Session() as session:
        for event_id, message in sent:
            res = session.post(f"{base}/events", data=message.body, headers=message.headers, verify=ca, timeout=10)
            if res.status_code != 202 or res.json() != {"accepted": 1, "duplicates": 0}:
                raise SystemExit(f"{event_id}: expected 202 with one accepted, got {res.status_code}: {res.text!r}")
            accepted.append(event_id)
    untrusted = None
    try:
        requests.get(f"{base}/health", verify=True, timeout=10)
    except requests.exceptions.SSLError as e:
        untrusted = type(e).__name__
    print(json.dumps({"accepted": accepted, "untrusted": untrusted}))


if __name__ == "__main__":
    main()
