"""The web UI in a real browser (SPEC section 12): what an operator does
with it, end to end against a live `hookline dev`, and what must never
happen (a script of a payload running, a page wider than a phone)."""

import json
import re
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import expect
from standardwebhooks import Webhook

from conftest import BASE, KEY, api, shoot, sign_in, wait_for

# Markup that runs a script wherever it is not shown as text.
HOSTILE = [
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=window.__pwned=1>",
    "'><svg onload=window.__pwned=1>",
]
HOSTILE_TEXT = " ".join(HOSTILE)

# The UI's Content-Security-Policy, as crates/ui serves it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_nothing_ran(page):
    assert page.evaluate("window.__pwned") is None, page.url
    # Only our own script, no element a payload could have brought.
    assert page.locator("script").count() == 1, page.url
    assert page.locator("img, svg, iframe, object, embed").count() == 0, page.url


def test_signing_in_with_the_keyboard_and_out_again(context):
    page = context.new_page()
    response = page.goto("/ui/")
    assert page.url.endswith("/ui/sign-in")
    assert response.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP and "*" not in CSP
    # The key field has the focus: type, and Enter.
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type("hk_test_not_a_key")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("That API key is not valid.")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    # The right key, typed and sent with Enter.
    page.get_by_label("API key").fill(KEY)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    # The first Tab reaches the skip link, which leads past the menu.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    page.keyboard.press("Tab")
    expect(page.locator("main a").first).to_be_focused()
    cookie = next(c for c in context.cookies() if c["name"] == "hookline_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert KEY not in cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto("/ui/endpoints")
    assert page.url.endswith("/ui/sign-in")


def test_an_endpoint_is_created_its_secret_copied_and_an_event_delivered_to_it(page, receiver):
    event_type = unique("ui.invoice.paid")
    page.get_by_role("link", name="Event types").click()
    page.get_by_label("Name").fill(event_type)
    page.get_by_label("Description").fill("An invoice was paid")
    page.get_by_role("button", name="Save event type").click()
    expect(page.get_by_role("row").filter(has_text=event_type)).to_contain_text("An invoice was paid")

    path = "/" + unique("hook")
    page.get_by_role("link", name="Endpoints").click()
    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label("URL").fill(receiver.url + path)
    page.get_by_label("Description").fill("billing")
    page.get_by_label("Event types").fill(event_type)
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Endpoint created")
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("whsec_"), secret
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.get_by_role("link", name="Go to the endpoint").click()
    endpoint_id = page.url.rsplit("/", 1)[1]
    # The secret is shown once: never on the endpoint's page, nor the list.
    assert secret not in page.content()
    shoot(page, "endpoint")
    page.get_by_role("link", name="Endpoints").click()
    expect(page.get_by_role("row").filter(has_text=endpoint_id)).to_contain_text("billing")
    assert secret not in page.content()

    page.get_by_role("link", name="Events", exact=True).click()
    publish = page.get_by_role("region", name="Publish an event")
    publish.get_by_label("Type").select_option(event_type)
    publish.get_by_label("Payload (JSON)").fill('{"invoiceId": "in_ui_1", "amount": 1200}')
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Event ")
    event_id = page.url.rsplit("/", 1)[1]
    # The page refreshes itself until the delivery has settled.
    row = page.get_by_role("row").filter(has_text=endpoint_id)
    expect(row).to_contain_text("complete", timeout=60_000)
    expect(row).to_contain_text("HTTP 200")
    expect(page.locator("#payload")).to_have_text('{\n  "invoiceId": "in_ui_1",\n  "amount": 1200\n}')
    shoot(page, "event")

    [delivery] = receiver.received(path)
    # The copied secret verifies it, with the official verifier.
    payload = Webhook(secret).verify(delivery["body"], delivery["headers"])
    assert payload["type"] == event_type
    assert payload["data"] == {"invoiceId": "in_ui_1", "amount": 1200}
    assert delivery["headers"]["webhook-id"] == event_id

    # The delivery's own page: its attempt, the answer's body.
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Delivery ")
    expect(page.locator(".timeline")).to_contain_text("HTTP 200")


def test_an_endpoint_is_edited_disabled_enabled_and_its_secret_rotated(page, receiver):
    status, created = api(
        "POST",
        "/v1/endpoints",
        {"url": receiver.url + "/" + unique("edit"), "eventTypes": ["*"], "description": "before"},
    )
    assert status == 201, created
    page.goto(f"/ui/endpoints/{created['endpointId']}")
    page.get_by_label("Description").fill("after")
    page.get_by_label("Timeout").fill("not a duration")
    page.get_by_role("button", name="Save").click()
    # Refused: said why, and what was typed is still there.
    expect(page.get_by_role("alert")).to_contain_text("timeout")
    expect(page.get_by_label("Description")).to_have_value("after")
    page.get_by_label("Timeout").fill("45s")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".facts")).to_contain_text("enabled")
    assert api("GET", f"/v1/endpoints/{created['endpointId']}")[1]["description"] == "after"
    assert api("GET", f"/v1/endpoints/{created['endpointId']}")[1]["timeout"] == "45s"

    page.get_by_role("button", name="Disable endpoint").click()
    expect(page.locator(".facts")).to_contain_text("disabled (manual)")
    page.get_by_role("button", name="Enable endpoint").click()
    expect(page.locator(".facts")).to_contain_text("enabled")

    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Secret rotated")
    rotated = page.locator("#secret").inner_text()
    assert rotated.startswith("whsec_") and rotated != created["secret"]

    page.goto(f"/ui/endpoints/{created['endpointId']}")
    # The browser filled "since" with a day ago; nothing of it has failed.
    page.get_by_role("button", name="Recover").click()
    expect(page.get_by_role("status")).to_have_text(
        "Recovered: 0 failed deliveries are due again."
    )


def failed_jobs():
    status, page = api("GET", "/v1/jobs?status=failed&limit=100")
    assert status == 200, page
    return page["data"]


def test_dead_lettered_jobs_are_redriven_one_and_all(page, receiver):
    paths = ["/" + unique("gone") for _ in range(3)]
    ids = []
    for path in paths:
        receiver.answer(path, 410, b"gone for now")
        status, job = api("POST", "/v1/jobs", {"providers": ["gas"], "callbackUrl": receiver.url + path})
        assert status == 202, job
        ids.append(job["jobId"])
    wait_for(
        "the jobs to be dead-lettered",
        lambda: {j["jobId"] for j in failed_jobs()} >= set(ids),
    )
    for path in paths:
        receiver.answer(path, 200)

    # The overview counts them.
    page.get_by_role("link", name="Overview").click()
    tile = page.locator(".counts li").filter(has_text="failed")
    expect(tile.locator(".count")).to_have_text(str(len(failed_jobs())))
    tile.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dead letter")
    shoot(page, "dead-letter")
    page.get_by_role("link", name=ids[0]).click()
    expect(page.locator(".facts")).to_contain_text("failed")
    expect(page.locator(".timeline")).to_contain_text("HTTP 410")
    page.get_by_role("button", name="Redrive this job").click()
    expect(page.get_by_role("button", name="Redrive this job")).to_have_count(0)

    def complete():
        page.reload()
        return "complete" in page.locator(".facts").inner_text()

    wait_for("the redriven job to be delivered", complete)
    shoot(page, "job")

    page.get_by_role("link", name="Dead letter", exact=True).click()
    waiting = len(failed_jobs())
    assert waiting >= 2
    page.get_by_role("button", name="Redrive every failed job").click()
    expect(page.get_by_role("status")).to_contain_text(f"Redriven: {waiting}.")
    wait_for(
        "every redriven job to be delivered",
        lambda: all(api("GET", f"/v1/jobs/{i}")[1]["status"] == "complete" for i in ids),
    )
    for path in paths:
        assert len(receiver.received(path)) == 2


def test_hostile_text_is_shown_as_text_on_every_page(page, receiver):
    event_type = unique("ui.hostile")
    assert api("PUT", f"/v1/event-types/{event_type}", {"description": HOSTILE_TEXT})[0] == 201
    path = "/" + unique("hostile")
    receiver.answer(path, 200, HOSTILE_TEXT.encode())
    status, endpoint = api(
        "POST",
        "/v1/endpoints",
        {
            "url": receiver.url + path,
            "eventTypes": [event_type],
            "description": HOSTILE_TEXT,
            "owner": HOSTILE[1],
            "headers": {"x-note": HOSTILE[2]},
        },
    )
    assert status == 201, endpoint
    status, event = api(
        "POST",
        "/v1/events",
        {"type": event_type, "owner": HOSTILE[1], "payload": {"html": HOSTILE_TEXT}},
    )
    assert status == 202, event
    [delivery] = event["deliveries"]
    wait_for(
        "the hostile delivery",
        lambda: api("GET", f"/v1/jobs/{delivery['deliveryId']}")[1]["status"] == "complete",
    )
    gone = "/" + unique("gone-hostile")
    receiver.answer(gone, 410, HOSTILE_TEXT.encode())
    status, job = api(
        "POST",
        "/v1/jobs",
        {"providers": ["gas"], "callbackUrl": receiver.url + gone, "metadata": {"note": HOSTILE_TEXT}},
    )
    assert status == 202, job
    wait_for(
        "the hostile job to fail",
        lambda: api("GET", f"/v1/jobs/{job['jobId']}")[1]["status"] == "failed",
    )
    source_status, source = api(
        "POST",
        "/v1/sources",
        {
            "name": HOSTILE[0],
            "eventType": event_type,
            "verify": {"type": "header", "name": "x-token", "value": "t"},
        },
    )
    assert source_status == 201, source

    pages = {
        "/ui": None,
        "/ui/event-types": HOSTILE_TEXT,
        "/ui/endpoints": HOSTILE_TEXT,
        f"/ui/endpoints/{endpoint['endpointId']}": HOSTILE[2],
        f"/ui/events?owner={HOSTILE[1]}": HOSTILE[1],
        f"/ui/events/{event['eventId']}": HOSTILE[0],
        f"/ui/jobs/{delivery['deliveryId']}": None,
        f"/ui/jobs/{job['jobId']}": HOSTILE[1],
        "/ui/sources": HOSTILE[0],
        f"/ui/sources/{source['sourceId']}": None,
        "/ui/jobs?status=<script>window.__pwned=1</script>": "No such status",
    }
    for path, shown in pages.items():
        page.goto(path)
        if shown:
            expect(page.locator("main")).to_contain_text(shown)
        for details in page.locator("details").all():
            details.locator("summary").click()
        assert_nothing_ran(page)
    # A response body is shown as it came, as text.
    page.goto(f"/ui/jobs/{delivery['deliveryId']}")
    page.locator("details summary").first.click()
    expect(page.locator(".timeline pre")).to_have_text(HOSTILE_TEXT)


def test_every_list_pages_and_every_page_fits_a_phone(context, receiver):
    page = context.new_page()
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, KEY)
    path = "/" + unique("many")
    created = []
    for _ in range(27):
        status, job = api("POST", "/v1/jobs", {"providers": ["gas"], "callbackUrl": receiver.url + path})
        assert status == 202, job
        created.append(job["jobId"])
    page.goto("/ui/jobs")
    first = set(page.locator("tbody tr td:first-child").all_inner_texts())
    assert len(first) == 25
    page.get_by_role("link", name="Next page").click()
    second = set(page.locator("tbody tr td:first-child").all_inner_texts())
    assert second and not first & second
    # Times in the viewer's zone (Tokyo here), UTC on hover.
    when = page.locator("tbody time").first
    assert when.get_attribute("title").endswith("Z (UTC)")
    assert when.inner_text() != when.get_attribute("datetime")
    assert not re.search(r"Z$", when.inner_text())

    for path in [
        "/ui/",
        "/ui/jobs",
        f"/ui/jobs/{created[0]}",
        "/ui/jobs?status=failed",
        "/ui/endpoints",
        "/ui/endpoints/new",
        "/ui/event-types",
        "/ui/events",
        "/ui/sources",
    ]:
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width} px wide at 375"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/ui/")
    shoot(page, "overview")


def test_a_source_is_created_and_shows_its_requests_and_verdicts(page):
    event_type = unique("ui.source.event")
    assert api("PUT", f"/v1/event-types/{event_type}", {"description": "from a source"})[0] == 201
    name = unique("ui-source")
    page.get_by_role("link", name="Sources").click()
    form = page.get_by_role("region", name="New source")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Event type").select_option(event_type)
    config = form.get_by_label("Verification, challenge and split (JSON)")
    # Not JSON: refused, and what was typed is kept.
    config.fill('{"verify": ')
    form.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("alert")).to_contain_text("not JSON")
    expect(form.get_by_label("Name")).to_have_value(name)
    # The API's own refusal: a source without verification fails closed.
    config.fill('{"split": {"items": "/events", "id": "/id"}}')
    form.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("alert")).to_contain_text("verify")
    config.fill(
        '{"verify": {"type": "header", "name": "x-token", "value": "s3cret-token"},'
        ' "split": {"items": "/events", "id": "/id"}}'
    )
    form.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Source {name}")
    assert "s3cret-token" not in page.content()
    ingest = page.locator(".facts code").first.inner_text()
    assert re.fullmatch(r"/in/[0-9A-Z]{26}", ingest), ingest

    body = json.dumps({"events": [{"id": "e1"}, {"id": "e2"}]}).encode()
    for token, answer in [("s3cret-token", 200), ("wrong", 401)]:
        request = urllib.request.Request(
            BASE + ingest,
            data=body,
            method="POST",
            headers={"x-token": token, "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == answer
        except urllib.error.HTTPError as error:
            assert error.code == answer
    page.reload()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("rejected")
    expect(rows.nth(1)).to_contain_text("accepted")
    expect(rows.nth(1).get_by_role("link")).to_have_count(2)
    assert "s3cret-token" not in page.content()
    shoot(page, "source")
