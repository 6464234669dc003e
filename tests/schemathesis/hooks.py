"""schemathesis hooks for inlet: what docs/openapi.yaml cannot say.

OpenAPI cannot make a header required for one request content type only.
Binary mode is a `POST /events` whose `Content-Type` is not a structured one
and that carries `ce-specversion`; without it the server answers `415`
(documented). So that the fuzzer also stores binary-mode events (and every
`GET /events` then checks how they are written back), a binary-mode body
gets `ce-specversion: 1.0` and, where the generated headers lack them, a
valid `ce-id`, `ce-source` and `ce-type`. Generated values are kept.
"""

import schemathesis

BINARY_MODE_TYPES = ("application/octet-stream", "text/plain")
DEFAULTS = {
    "ce-specversion": "1.0",
    "ce-id": "schemathesis-binary",
    "ce-source": "/schemathesis",
    "ce-type": "schemathesis.binary",
}


@schemathesis.hook
def map_case(context, case):
    operation = context.operation
    if operation is None or operation.method.upper() != "POST" or operation.path != "/events":
        return case
    if case.media_type not in BINARY_MODE_TYPES:
        return case
    headers = dict(case.headers or {})
    present = {name.lower() for name in headers}
    for name, value in DEFAULTS.items():
        if name not in present:
            headers[name] = value
    case.headers = headers
    return case
