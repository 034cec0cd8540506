"""The job page and the dashboard in headless Chromium (Debian's), driven by Playwright; screenshots kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from generations import services
from nodes.tasks import check_nodes
from tests.generations.conftest import register, wait_finished
from tests.generations.graphs import txt2img
from tests.workers import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and os.geteuid() != 0,
        reason=f"{CHROMIUM} is missing and only root may install it (make test installs it as root)",
    ),
]


@pytest.fixture
def browser(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    # Playwright's sync API runs an event loop in this thread; Django would take the test's ORM calls for async.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, daphne):
    """A laptop-sized page on the test server that records console errors and WebSocket frames."""
    context = browser.new_context(base_url=daphne.url, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.errors, page.frames_in = [], []
    page.on("console", lambda message: record_error(page, message))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: page.frames_in.append(frame)))
    yield page
    context.close()


def record_error(page, message) -> None:
    # The admin login page (Django's) declares no icon, so Chromium asks for /favicon.ico; ours declare one.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        page.errors.append(f"{message.text} ({message.location.get('url')})")


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_job_page_shows_queue_progress_previews_and_the_final_image(page, worker, fakes, user):
    job = services.job_create(prompt=txt2img(), owner=user)
    page.goto(f"/jobs/{job.id}/")
    page.wait_for_selector("#conn[data-state=live]")
    assert page.locator("#queue").is_visible() and page.locator("#queue-position").inner_text() == "no"
    shot(page, "job-page-queued")

    register(fakes(steps_override=10, step_time=0.1), "gpu")
    services.dispatch_now()
    page.wait_for_function("Number(document.querySelector('#preview').dataset.previewsDrawn) >= 4")
    assert page.locator("#state").get_attribute("data-state") == "running"
    assert "KSampler" in page.locator("#current-node").inner_text()
    shot(page, "job-page-running")
    page.wait_for_selector("#job[data-state=succeeded]", timeout=20_000)

    assert page.locator("#progress").get_attribute("aria-valuenow") == "100"
    assert page.locator("#step-label").inner_text() == "Step 10 / 10"
    previews = {hashlib.sha256(f).hexdigest() for f in page.frames_in if isinstance(f, bytes)}
    assert len(previews) >= 4 and int(page.locator("#preview").get_attribute("data-previews-drawn")) >= 4
    final = page.locator("#outputs img").first
    final.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", final.element_handle())
    download = page.locator("#outputs a.button").first.get_attribute("href")
    assert download == f"/jobs/{job.id}/outputs/0?download=1"
    shot(page, "job-page-done")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "job-page-phone")
    assert page.errors == []


def test_the_job_page_explains_a_failure(page, worker, fakes, user):
    fault = {"kind": "runtime_error", "node": "3", "exception_message": "CUDA out of memory"}
    register(fakes(step_time=0.02, fault=fault), "gpu")
    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)])

    page.goto(f"/jobs/{job.id}/")
    page.wait_for_selector("#job[data-state=failed]")

    assert page.locator("#failure").is_visible()
    assert "CUDA out of memory" in page.locator("#failure-message").inner_text()
    shot(page, "job-page-failed")
    assert page.errors == []


def test_the_dashboard_needs_staff_and_shows_a_node_going_offline(
    page, daphne, worker, fakes, user, staff_session
):
    page.goto("/")
    assert "/admin/login/" in page.url

    doomed, healthy = fakes(), fakes()
    register(doomed, "gpu-a")
    register(healthy, "gpu-b")
    wait_finished([services.job_create(prompt=txt2img(), owner=user) for _ in range(2)])
    page.context.add_cookies([{"name": "sessionid", "value": staff_session, "url": daphne.url}])
    page.goto("/")
    page.wait_for_selector("[data-node=gpu-a][data-status=idle]")
    page.wait_for_selector(".job-row[data-state=succeeded] img.thumb")
    shot(page, "dashboard-online")

    doomed.crash()
    for _ in range(3):  # COMFYROUTER_OFFLINE_AFTER failed checks in a row
        check_nodes()

    page.wait_for_selector("[data-node=gpu-a][data-status=offline]", timeout=10_000)
    assert page.locator("[data-node=gpu-b]").get_attribute("data-status") == "idle"
    assert page.locator("#tile-online").inner_text() == "1 / 2"
    shot(page, "dashboard-node-offline")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "dashboard-phone")
    assert page.errors == []
