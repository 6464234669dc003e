"""Interop check with a client nobody here wrote: the official CloudEvents
Python SDK (cloudevents 2.x) builds events, sends them to inlet in structured
and binary mode, then reads them back from GET /events and parses them with
the same SDK. Every event must be accepted and come back unchanged.

Usage: python cloudevents_roundtrip.py HOST:PORT
Prints one JSON line with what it checked; exits non-zero on any mismatch.
"""

import http.client
import json
import sys
from datetime import datetime, timezone

from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def post(conn, message):
    conn.request("POST", "/events", body=message.body, headers=message.headers)
    res = conn.getresponse()
    body = res.read()
    if res.status != 202:
        raise SystemExit(f"expected 202, got {res.status}: {body!r}")
    return json.loads(body)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    fmt = JSONFormat()
    when = datetime(2026, 11, 29, 6, 0, 0, 123000, tzinfo=timezone.utc)

    sent = [
        ("structured", CloudEvent(
            {"id": "py-s1", "source": "/python/sdk", "type": "com.example.py.structured",
             "time": when, "subject": "café", "datacontenttype": "application/json",
             "myext": "value", "count": 7},
            {"temperature": 21.5, "tags": ["a", "b"], "nested": {"ok": True}})),
        ("structured", CloudEvent(
            {"id": "py-s2", "source": "/python/sdk", "type": "com.example.py.bytes",
             "time": when, "datacontenttype": "application/octet-stream"},
            b"\x00\x01\xfebinary")),
        ("binary", CloudEvent(
            {"id": "py-b1", "source": "/python/sdk", "type": "com.example.py.binary",
             "time": when, "subject": "a subject with spaces & symbols %",
             "datacontenttype": "application/json", "myext": "ext value"},
            {"message": "hello from binary mode", "n": 3})),
        ("binary", CloudEvent(
            {"id": "py-b2", "source": "/python/sdk", "type": "com.example.py.octets",
             "time": when, "datacontenttype": "application/octet-stream"},
            b"\x89PNG\r\n\x1a\n raw bytes")),
    ]
    for mode, event in sent:
        message = to_structured(event, fmt) if mode == "structured" else to_binary(event, fmt)
        summary = post(conn, message)
        if summary != {"accepted": 1, "duplicates": 0}:
            raise SystemExit(f"{mode} {event.get_id()}: unexpected summary {summary}")
    # Sending again is acknowledged as a duplicate.
    again = post(conn, to_binary(sent[2][1], fmt))
    if again != {"accepted": 0, "duplicates": 1}:
        raise SystemExit(f"retry: unexpected summary {again}")

    conn.request("GET", "/events?source=%2Fpython%2Fsdk")
    res = conn.getresponse()
    page = json.loads(res.read())
    stored = {e["event"]["id"]: e["event"] for e in page["events"]}
    checked = []
    for mode, event in sent:
        back = fmt.read(None, json.dumps(stored[event.get_id()]).encode())
        if back.get_attributes() != event.get_attributes():
            raise SystemExit(f"{event.get_id()}: attributes differ\n sent {event.get_attributes()}\n back {back.get_attributes()}")
        if back.get_data() != event.get_data():
            raise SystemExit(f"{event.get_id()}: data differs\n sent {event.get_data()!r}\n back {back.get_data()!r}")
        checked.append(event.get_id())
    print(json.dumps({"checked": checked, "stored": len(page["events"])}))


if __name__ == "__main__":
    main()
