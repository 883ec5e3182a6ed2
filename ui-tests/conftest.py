"""Fixtures of the browser tests: the live `hookline dev` .ci/ui started,
Debian's Chromium under Playwright, a signed-in page, a local receiver of
deliveries, and the API for what a test sets up without the UI."""

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

BASE = os.environ["HOOKLINE_UI_BASE"]
KEY = os.environ["HOOKLINE_UI_KEY"]
CHROMIUM = os.environ.get("HOOKLINE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("HOOKLINE_UI_SCREENSHOTS", "")


def api(method, path, body=None, key=KEY, headers=None):
    """One API request; (status, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, (json.loads(raw) if raw else None)


def wait_for(what, probe, timeout=60.0):
    """Polls `probe` until it answers something truthy, which it returns."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Receiver:
    """A webhook receiver on 127.0.0.1: every request kept, per path an
    answer (status and body) the test sets."""

    def __init__(self):
        self.requests = []
        self.answers = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                    status, answer = receiver.answers.get(self.path, (200, b"ok"))
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path, status, body=b"ok"):
        with self.lock:
            self.answers[path] = (status, body)

    def received(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="session")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    """A fresh browser profile (no cookie), in Tokyo's time zone, allowed
    the clipboard, that fails the test on any script error or dialog."""
    context = browser.new_context(
        timezone_id="Asia/Tokyo",
        locale="en-GB",
        permissions=["clipboard-read", "clipboard-write"],
        base_url=BASE,
    )
    errors = []
    context.on("weberror", lambda e: errors.append(f"page error: {e.error}"))

    def console(message):
        # A page answered 4xx (a refused form, a wrong key) is logged as a
        # failed load: the responses below judge those.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console {message.type}: {message.text}")

    def response(answer):
        # Every asset of ours loads; a page may answer 4xx, never 5xx.
        kind = answer.request.resource_type
        if (kind != "document" and answer.status >= 400) or answer.status >= 500:
            errors.append(f"{answer.status} for {kind} {answer.url}")

    def watch(page):
        page.on("dialog", lambda d: (errors.append(f"a dialog opened: {d.message}"), d.dismiss()))
        page.on("console", console)
        page.on("response", response)

    context.on("page", watch)
    yield context
    context.close()
    assert not errors, errors


@pytest.fixture
def page(context):
    """A page signed in with the dev key."""
    page = context.new_page()
    sign_in(page, KEY)
    return page


def sign_in(page, key):
    page.goto("/ui/")
    assert re.search(r"/ui/sign-in$", page.url), page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def shoot(page, name):
    """Saves the page's screenshot as NAME.png when .ci/ui was asked to."""
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)
