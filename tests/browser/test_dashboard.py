"""The dashboard page (`GET /`) in a real headless browser.

Starts the real inlet-server (`--listen 127.0.0.1:0 --store memory`), opens
`/` in Debian's chromium driven by Playwright for Python (never a browser
of Playwright's own: `executable_path=/usr/bin/chromium`), posts events
with urllib and checks what the page shows against `/stats` and what was
posted. Run by scripts/test.sh after the workspace is built:

    python tests/browser/test_dashboard.py [--server BINARY] [unittest args, e.g. a test name]
    python tests/browser/test_dashboard.py [--server BINARY] --screenshot docs/dashboard.png

`--screenshot PATH` runs no test: it writes a picture of the page while
events are posted continuously (the README's screenshot).
"""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER = os.path.join(ROOT, "target", "debug", "inlet-server")
CHROMIUM = os.environ.get("INLET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A generous bound for anything the page should show "at once" (it polls
# /stats every second and redraws rows four times a second).
PATIENCE = 20.0


class Server:
    """A running inlet-server on a free loopback port."""

    def __init__(self, *args):
        self.dir = tempfile.TemporaryDirectory()
        self.stderr = open(os.path.join(self.dir.name, "stderr"), "wb")
        cmd = [SERVER, "--listen", "127.0.0.1:0", "--store", "memory", "--data-dir", self.dir.name, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            self.close()
            raise RuntimeError(f"inlet-server did not start: {line!r}")
        self.addr = line[len("listening on "):]
        self.url = f"http://{self.addr}"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()
        self.dir.cleanup()

    def request(self, method, path, body=None, content_type=None, token=None):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=PATIENCE) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stats(self, token=None):
        status, _, body = self.request("GET", "/stats", token=token)
        assert status == 200, status
        return json.loads(body)

    def post_events(self, events, token=None):
        body = json.dumps(events).encode()
        status, _, answer = self.request("POST", "/events", body, "application/cloudevents-batch+json", token)
        return status, answer


def event(i, type_="com.example.order.created", source="/shop"):
    return {"specversion": "1.0", "id": f"e-{i}", "source": source, "type": type_, "data": {"n": i}}


def new_token(name, scopes):
    out = subprocess.run([SERVER, "token", "new", "--name", name, "--scope", scopes], check=True, capture_output=True)
    lines = out.stdout.decode().splitlines()
    return lines[0], "".join(l + "\n" for l in lines[1:] if not l.startswith("#"))


class Browser:
    """Headless chromium with a fresh profile; records console and page errors."""

    def __init__(self):
        self.profile = tempfile.TemporaryDirectory()
        self.pw = sync_playwright().start()
        self.ctx = self.pw.chromium.launch_persistent_context(
            self.profile.name,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        self.page = self.ctx.pages[0] if self.ctx.pages else self.ctx.new_page()
        self.console_errors = []
        self.page_errors = []
        self.requests = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append((r.url, r.headers.get("authorization"))))

    def close(self):
        self.ctx.close()
        self.pw.stop()
        self.profile.cleanup()

    def wait_for(self, js, arg=None, timeout=PATIENCE):
        self.page.wait_for_function(js, arg=arg, timeout=timeout * 1000)

    def value(self, element_id):
        return self.page.eval_on_selector(f"#{element_id}", "e => e.dataset.value")

    def table(self, table_id):
        return self.page.eval_on_selector_all(
            f"#{table_id} tbody tr[data-key]",
            "rows => rows.map(r => [r.dataset.key, Number(r.querySelector('td.n').dataset.value)])",
        )

    def event_ids(self):
        return self.page.eval_on_selector_all("#events tbody tr[data-id]", "rows => rows.map(r => r.dataset.id)")

    def state(self):
        return self.page.text_content("#state")


class DashboardTest(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        self.addCleanup(self.server.close)
        self.browser = Browser()
        self.addCleanup(self.browser.close)

    def post_mix(self):
        """3 types, 2 sources, and refusals of two reasons. Returns the events posted."""
        posted = [event(i, t) for i, t in enumerate(["a.one"] * 7 + ["b.two"] * 4 + ["c.three"] * 2)]
        for start in range(0, len(posted), 5):
            status, answer = self.server.post_events(posted[start:start + 5])
            self.assertEqual(status, 202, answer)
        for _ in range(3):
            status, _ = self.server.post_events([{"specversion": "1.0", "id": "x"}])
            self.assertEqual(status, 422)
        status, _, _ = self.server.request("POST", "/events", b"{", "application/cloudevents+json")
        self.assertEqual(status, 400)
        return posted

    def test_numbers_match_stats_after_posting_stops(self):
        b = self.browser
        response = b.page.goto(self.server.url + "/")
        self.assertEqual(response.status, 200)
        posted = self.post_mix()
        self.assertEqual(self.server.stats()["accepted"], len(posted))
        # The page's own requests count in /stats too (connections, and
        # refusals if any fail): compare with /stats read at the same time,
        # until the page has caught up with a poll.
        deadline = time.monotonic() + PATIENCE
        while True:
            stats = self.server.stats()
            shown = {
                "accepted": int(b.value("accepted") or -1),
                "duplicates": int(b.value("duplicates") or -1),
                "refused": int(b.value("refused") or -1),
                "types": b.table("types"),
                "reasons": dict(b.table("reasons")),
            }
            want = {
                "accepted": stats["accepted"],
                "duplicates": stats["duplicates"],
                "refused": sum(stats["rejected"].values()),
                "types": [list(t) for t in sorted(stats["types"].items(), key=lambda kv: (-kv[1], kv[0]))],
                "reasons": stats["rejected"],
            }
            if shown == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(shown, want)
        self.assertGreaterEqual(want["refused"], 4)
        self.assertEqual(want["reasons"].get("invalid-event"), 3)
        self.assertEqual(b.table("types"), [["a.one", 7], ["b.two", 4], ["c.three", 2]])
        self.assertEqual(b.page_errors, [])

    def test_posted_events_appear_on_the_page_without_console_errors(self):
        # Needs GET /events/stream (issue 19, item 1).
        b = self.browser
        b.page.goto(self.server.url + "/")
        # The page shows events stored from the moment its stream opens.
        b.wait_for("() => document.getElementById('state').textContent === 'live'")
        before = [event(f"before-{i}") for i in range(3)]
        self.assertEqual(self.server.post_events(before)[0], 202)
        after = [event(f"after-{i}", "d.four") for i in range(5)]
        self.assertEqual(self.server.post_events(after)[0], 202)
        want = [e["id"] for e in before + after]
        b.wait_for(
            "ids => { const shown = new Set([...document.querySelectorAll('#events tbody tr[data-id]')]"
            ".map(r => r.dataset.id)); return ids.every(i => shown.has(i)); }",
            want,
        )
        # Newest first, each once.
        self.assertEqual(b.event_ids(), list(reversed(want)))
        self.assertEqual(b.page.text_content("#received"), str(len(want)))
        time.sleep(2)  # a few more polls and redraws, to catch late errors
        self.assertEqual(b.console_errors, [])
        self.assertEqual(b.page_errors, [])

    def test_the_page_keeps_at_most_100_rows_and_counts_what_it_does_not_draw(self):
        # Needs GET /events/stream (issue 19, item 1).
        b = self.browser
        b.page.goto(self.server.url + "/")
        b.wait_for("() => document.getElementById('state').textContent === 'live'")
        total = 2000
        for start in range(0, total, 500):
            self.assertEqual(self.server.post_events([event(i) for i in range(start, start + 500)])[0], 202)
        b.wait_for("n => document.getElementById('received').textContent === n", f"{total:,}")
        b.wait_for("() => document.querySelector('#events tbody tr[data-id]')?.dataset.id === 'e-1999'")
        self.assertEqual(len(b.event_ids()), 100)
        self.assertEqual(b.event_ids(), [f"e-{i}" for i in range(total - 1, total - 101, -1)])
        skipped = int(b.page.text_content("#skipped").replace(",", ""))
        self.assertGreaterEqual(skipped, 0)
        self.assertLessEqual(skipped, total - 100)
        self.assertEqual(b.page_errors, [])

    def test_the_stream_starts_at_the_newest_event_not_at_the_first(self):
        # A store of many events is not replayed into the page: the first
        # stream request asks for new events only (after=latest).
        for start in range(0, 500, 250):
            self.assertEqual(self.server.post_events([event(i) for i in range(start, start + 250)])[0], 202)
        b = self.browser
        b.page.goto(self.server.url + "/")
        # The stream never ends, so it is seen as a request, not a finished resource.
        b.wait_for("() => document.getElementById('state').textContent === 'live'")
        streams = [(url, auth) for url, auth in b.requests if "/events/stream" in url]
        self.assertEqual(streams[0][0], self.server.url + "/events/stream?after=latest")

    def test_the_page_is_served_with_a_strict_policy_and_head_works(self):
        status, headers, body = self.server.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        csp = headers["Content-Security-Policy"]
        self.assertTrue(csp.startswith("default-src 'none'; script-src 'sha256-"), csp)
        self.assertIn("connect-src 'self'", csp)
        self.assertNotIn("unsafe", csp)
        self.assertEqual(headers["Cache-Control"], "no-cache")
        self.assertTrue(body.startswith(b"<!doctype html>"))
        status, head_headers, head_body = self.server.request("HEAD", "/")
        self.assertEqual((status, head_body), (200, b""))
        self.assertEqual(head_headers["Content-Length"], str(len(body)))
        self.assertEqual(self.server.request("POST", "/", b"x", "text/plain")[0], 405)


class TokensTest(unittest.TestCase):
    def setUp(self):
        self.reader, reader_entry = new_token("viewer", "read")
        self.writer, writer_entry = new_token("shop", "write")
        self.tokens = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.tokens.write(reader_entry + writer_entry)
        self.tokens.close()
        self.addCleanup(os.unlink, self.tokens.name)
        self.server = Server("--tokens", self.tokens.name)
        self.addCleanup(self.server.close)
        self.browser = Browser()
        self.addCleanup(self.browser.close)

    def test_unauthorized_without_a_token_data_with_one_and_never_a_token_in_a_url(self):
        b, s = self.browser, self.server
        self.assertEqual(s.post_events([event(i) for i in range(6)], token=self.writer)[0], 202)
        self.assertEqual(s.request("GET", "/")[0], 200, "the page itself needs no token")
        b.page.goto(s.url + "/")
        b.wait_for("() => document.getElementById('state').textContent === 'unauthorized'")
        self.assertEqual(b.page.text_content("#accepted"), "–")
        self.assertEqual(b.table("types"), [])
        # A write-only token is refused too (403): still unauthorized.
        b.page.fill("#token", self.writer)
        b.page.click("#token-form button[type=submit]")
        time.sleep(1.5)
        b.wait_for("() => document.getElementById('state').textContent === 'unauthorized'")
        self.assertEqual(b.page.text_content("#accepted"), "–")
        b.page.fill("#token", self.reader)
        b.page.click("#token-form button[type=submit]")
        b.wait_for("() => document.getElementById('accepted').dataset.value === '6'")
        self.assertEqual(b.table("types"), [["com.example.order.created", 6]])
        b.wait_for("() => document.getElementById('state').textContent !== 'unauthorized'")
        # Kept for the tab (sessionStorage), not in localStorage or a cookie.
        self.assertEqual(b.page.evaluate("sessionStorage.getItem('inlet-token')"), self.reader)
        self.assertEqual(b.page.evaluate("localStorage.length"), 0)
        self.assertEqual(b.ctx.cookies(), [])
        b.page.reload()
        b.wait_for("() => document.getElementById('accepted').dataset.value === '6'")
        for url, auth in b.requests:
            self.assertNotIn(self.reader, url)
            self.assertNotIn(self.writer, url)
        stats_auth = {auth for url, auth in b.requests if url.endswith("/stats")}
        self.assertIn(f"Bearer {self.reader}", stats_auth)
        # "Forget" drops it: unauthorized again.
        b.page.click("#forget")
        b.wait_for("() => document.getElementById('state').textContent === 'unauthorized'")
        self.assertIsNone(b.page.evaluate("sessionStorage.getItem('inlet-token')"))
        self.assertEqual(b.page_errors, [])


class FakeStream(http.server.ThreadingHTTPServer):
    """Serves the real page (bytes and policy, from a real inlet-server),
    fixed `/stats`, and a fixed `/events/stream`: proves the page's SSE
    parsing, `lagged` handling and `Last-Event-ID` resume by themselves."""

    daemon_threads = True

    def __init__(self, page, csp, burst=0):
        self.page, self.csp, self.burst = page, csp, burst
        self.stream_requests = []  # (Last-Event-ID, Authorization) per stream request
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), FakeHandler)

    def handle_error(self, request, client_address):
        # The browser closing a stream (a reconnect, the end of the test)
        # is not an error of the test.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def item(seq, id_, type_="t.fake"):
    ev = {"specversion": "1.0", "id": id_, "source": "/fake", "type": type_}
    return json.dumps({"seq": seq, "received_at": "2026-12-02T18:00:00Z", "token": None, "event": ev})


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, content_type, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        if self.path == "/":
            return self.send(200, "text/html; charset=utf-8", srv.page, [("Content-Security-Policy", srv.csp)])
        if self.path == "/stats":
            stats = {"accepted": 3, "duplicates": 0, "rejected": {}, "types": {"t.fake": 3},
                     "connections": {"open": 1, "total": 1}, "uptime_seconds": 1, "tokens": {}}
            return self.send(200, "application/json", json.dumps(stats).encode())
        if self.path.split("?")[0] != "/events/stream":
            return self.send(404, "text/plain", b"no")
        srv.stream_requests.append((self.path, self.headers.get("Last-Event-ID"), self.headers.get("Accept")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if srv.burst:
            # Many events at once, in large writes, as a fast stream sends.
            events = "".join(f"id: {n}\ndata: {item(n, f'f-{n}')}\n\n" for n in range(1, srv.burst + 1))
            for start in range(0, len(events), 256 * 1024):
                self.wfile.write(events[start:start + 256 * 1024].encode())
            self.wfile.flush()
            srv.release.wait(PATIENCE)
            return
        if len(srv.stream_requests) == 1:
            # Split across writes mid-line and mid-CRLF; a comment; a field
            # without a space after the colon; an unknown field; then
            # `lagged` and the end of the stream.
            parts = [
                ": keep-alive\r\n\r\nid: 1\r\ndata: " + item(1, "f-1")[:20],
                item(1, "f-1")[20:] + "\r",
                "\n\r\nid:2\ndata:" + item(2, "f-2") + "\nretry: 10\n\n",
                'event: lagged\r\ndata: {"last_seq":2,"detail":"behind"}\r\n\r\n',
            ]
        else:
            parts = [f"id: 3\ndata: {item(3, 'f-3')}\n\n", ": keep-alive\n\n"]
        for p in parts:
            self.wfile.write(p.encode())
            self.wfile.flush()
            time.sleep(0.05)
        if len(srv.stream_requests) > 1:
            srv.release.wait(PATIENCE)


class FakeStreamTest(unittest.TestCase):
    def serve(self, burst=0):
        real = Server()
        try:
            status, headers, page = real.request("GET", "/")
        finally:
            real.close()
        self.assertEqual(status, 200)
        fake = FakeStream(page, headers["Content-Security-Policy"], burst)
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        self.addCleanup(fake.server_close)
        self.addCleanup(fake.shutdown)
        self.addCleanup(fake.release.set)
        b = Browser()
        self.addCleanup(b.close)
        host, port = fake.server_address
        b.page.goto(f"http://{host}:{port}/")
        return fake, b

    def test_a_burst_of_events_keeps_the_newest_100_rows_and_counts_the_rest(self):
        total = 20000
        fake, b = self.serve(burst=total)
        b.wait_for("n => document.getElementById('received').textContent === n", f"{total:,}")
        b.wait_for("() => document.querySelector('#events tbody tr[data-id]')?.dataset.id === 'f-20000'")
        self.assertEqual(b.event_ids(), [f"f-{n}" for n in range(total, total - 100, -1)])
        skipped = int(b.page.text_content("#skipped").replace(",", ""))
        # Redrawn at most 4 times a second: most of a burst is never drawn,
        # and what is counted as drawn is at most the events received.
        self.assertGreaterEqual(skipped, total - 100 * 50)
        self.assertLess(skipped, total)
        # Still responsive: a click is handled at once.
        b.page.click("#forget")
        self.assertEqual(len(fake.stream_requests), 2)
        self.assertEqual(b.console_errors, [])
        self.assertEqual(b.page_errors, [])

    def test_the_pages_sse_reader_parses_resumes_after_lagged_and_shows_each_event_once(self):
        fake, b = self.serve()
        b.wait_for("() => document.querySelectorAll('#events tbody tr[data-id]').length === 3")
        self.assertEqual(b.event_ids(), ["f-3", "f-2", "f-1"])
        self.assertEqual(b.page.text_content("#received"), "3")
        # First from `after` (3 accepted: from the start), then resumed by
        # Last-Event-ID from the `last_seq` of `lagged`.
        self.assertEqual(fake.stream_requests[0], ("/events/stream?after=latest", None, "text/event-stream"))
        self.assertEqual(fake.stream_requests[1], ("/events/stream", "2", "text/event-stream"))
        self.assertEqual(len(fake.stream_requests), 2)
        b.wait_for("() => document.getElementById('state').textContent === 'live'")
        self.assertEqual(b.console_errors, [])
        self.assertEqual(b.page_errors, [])


def screenshot(path):
    """The page while events are posted continuously (several types, some refusals)."""
    server = Server()
    stop = threading.Event()
    types = ["order.created", "order.paid", "cart.updated", "user.signed_in", "order.shipped"]

    def load(thread):
        i = 0
        while not stop.is_set():
            batch = [event(f"{thread}-{i + k}", types[(i + k) % 7 % 5], f"/shop/{(i + k) % 3}") for k in range(50)]
            server.post_events(batch)
            if i % 500 == 0:
                server.post_events([{"specversion": "1.0", "id": "bad"}])
            i += 50
            time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(2)]
    browser = Browser()
    try:
        browser.page.goto(server.url + "/")
        for t in threads:
            t.start()
        time.sleep(20)
        browser.page.screenshot(path=path, full_page=True)
    finally:
        stop.set()
        for t in threads:
            t.join()
        browser.close()
        server.close()
    print(f"wrote {path}")


def main():
    args = sys.argv[1:]
    global SERVER
    shot = None
    if "--screenshot" in args:
        i = args.index("--screenshot")
        shot = args[i + 1]
        del args[i:i + 2]
    if "--server" in args:
        i = args.index("--server")
        SERVER = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    if shot:
        screenshot(shot)
        return 0
    result = unittest.main(argv=[sys.argv[0], "-v", *args], exit=False).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    return 1 if failed or not result.wasSuccessful() else 0


if __name__ == "__main__":
    sys.exit(main())
