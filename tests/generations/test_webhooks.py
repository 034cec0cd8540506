"""Webhooks: the finished job POSTed, signed, retried with backoff, attempts recorded; and retention."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from generations import services, webhooks
from generations.models import Job, JobOutput
from generations.tasks import sweep
from tests.generations.conftest import register, wait_finished, wait_until
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test"


class Receiver:
    """A local webhook endpoint answering the given statuses in turn (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        made.append(Receiver(*statuses))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def hooked(engine, settings, fakes):
    """A worker and a node, with a known webhook secret in both processes."""

    def start(**overrides) -> None:
        settings.COMFYROUTER_WEBHOOK_SECRET = SECRET
        # Receivers listen on loopback, which webhooks refuse unless the operator allows private URLs.
        overrides = {"COMFYROUTER_ALLOW_PRIVATE_URLS": True, "COMFYROUTER_WEBHOOK_BACKOFF": 1, **overrides}
        engine({"COMFYROUTER_WEBHOOK_SECRET": SECRET}, **overrides)
        register(fakes(), "gpu")

    return start


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivered(job: Job, *, attempts: int, timeout: float = 15) -> Job:
    """Wait for the attempts, running beat's sweep (which sends due retries) twice a second."""
    done = Job.objects.filter(id=job.id, webhook_attempts=attempts, webhook_next_at__isnull=True)
    ticks = iter(range(10**6))
    wait_until(lambda: done.exists() or (next(ticks) % 10 == 0 and sweep() and False), timeout=timeout,
               what=f"{attempts} webhook attempt(s)")  # fmt: skip
    job.refresh_from_db()
    return job


def test_a_finished_job_is_posted_to_its_webhook_signed(hooked, receiver, user):
    hooked()
    hook = receiver(200)
    job = services.job_create(prompt=txt2img(), owner=user, webhook_url=hook.url)

    [job] = wait_finished([job])
    job = delivered(job, attempts=1)

    assert job.state == Job.State.SUCCEEDED and job.webhook_delivered_at and not job.webhook_error
    [(headers, body)] = hook.calls
    assert hmac.compare_digest(headers["X-ComfyRouter-Signature"], signature(body))
    sent = json.loads(body)
    assert sent["event"] == "job.finished"
    assert sent["job"]["id"] == str(job.id) and sent["job"]["state"] == "succeeded"


def test_a_failing_receiver_gets_the_webhook_again_until_it_answers_2xx(hooked, receiver, user):
    hooked()
    hook = receiver(500, 500, 200)
    job = services.job_create(prompt=txt2img(), owner=user, webhook_url=hook.url)

    job = delivered(job, attempts=3, timeout=20)

    assert job.webhook_delivered_at is not None and job.webhook_error == ""
    assert len(hook.calls) == 3
    assert len({headers["X-ComfyRouter-Delivery"] for headers, _ in hook.calls}) == 3
    assert all(headers["X-ComfyRouter-Signature"] == signature(body) for headers, body in hook.calls)
    assert {json.loads(body)["job"]["id"] for _, body in hook.calls} == {str(job.id)}


def test_a_receiver_that_never_answers_2xx_is_given_up_with_the_error(hooked, receiver, user):
    hooked(COMFYROUTER_WEBHOOK_MAX_ATTEMPTS=2)
    hook = receiver(503)
    job = services.job_create(prompt=txt2img(), owner=user, webhook_url=hook.url)

    job = delivered(job, attempts=2)

    assert job.webhook_delivered_at is None and job.webhook_error == f"HTTP 503 from {hook.url}"
    wait_until(lambda: len(hook.calls) >= 2, timeout=5, what="the second call")
    assert Job.objects.get(id=job.id).webhook_attempts == 2 and len(hook.calls) == 2


def finished_job(user, *, days_ago: float, name: str) -> Job:
    job = Job.objects.create(prompt=txt2img(), owner=user, state=Job.State.SUCCEEDED)
    Job.objects.filter(id=job.id).update(finished_at=timezone.now() - timedelta(days=days_ago))
    output = JobOutput(job=job, index=0, node_id="9", filename=name, sha256="0" * 64)
    output.file.save(f"{job.id}/00-{name}", ContentFile(b"png"), save=True)
    return job


def test_purge_deletes_jobs_past_retention_or_the_history_limit_with_their_files(db, settings, user):
    settings.COMFYROUTER_JOB_RETENTION_DAYS = 7
    settings.COMFYROUTER_HISTORY_LIMIT = 2
    old = finished_job(user, days_ago=8, name="old.png")
    kept = [finished_job(user, days_ago=age, name=f"k{age}.png") for age in (1, 2)]
    beyond = finished_job(user, days_ago=3, name="beyond.png")
    running = Job.objects.create(prompt=txt2img(), owner=user, state=Job.State.RUNNING)
    files = {job.id: job.outputs.get().file for job in (old, beyond, *kept)}

    assert services.jobs_purge() == 2

    assert set(Job.objects.values_list("id", flat=True)) == {running.id, *(job.id for job in kept)}
    assert not files[old.id].storage.exists(files[old.id].name)
    assert not files[beyond.id].storage.exists(files[beyond.id].name)
    assert all(files[job.id].storage.exists(files[job.id].name) for job in kept)


def test_a_job_submitted_with_an_api_key_is_signed_with_that_keys_hash(hooked, receiver, user, api_key):
    hooked()
    key, raw = api_key
    hook = receiver(200)
    job = services.job_create(prompt=txt2img(), owner=user, api_key=key, webhook_url=hook.url)

    delivered(job, attempts=1)

    [(headers, body)] = hook.calls
    secret = hashlib.sha256(raw.encode()).hexdigest()  # what the key's holder can derive
    assert (
        headers["X-ComfyRouter-Signature"]
        == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    )


def test_a_webhook_to_a_private_address_is_refused_at_the_door(builtin_endpoints, api_client, settings):
    settings.COMFYROUTER_ALLOW_PRIVATE_URLS = False
    body = {"inputs": {"prompt": "x"}, "webhook_url": "http://169.254.169.254/latest/meta-data"}

    response = api_client.post("/api/endpoints/sd15-txt2img/run", body, format="json")

    assert response.status_code == 400
    assert "not a public address" in response.json()["webhook_url"][0]


def test_a_webhook_whose_address_turned_private_is_given_up_without_a_connection(settings, user):
    settings.COMFYROUTER_ALLOW_PRIVATE_URLS = False
    job = Job.objects.create(owner=user, state=Job.State.SUCCEEDED, webhook_url="http://127.0.0.1:9/hook",
                             webhook_next_at=timezone.now())  # fmt: skip

    webhooks.deliver(job.id)

    job.refresh_from_db()
    assert job.webhook_attempts == 1 and job.webhook_next_at is None
    assert job.webhook_error.startswith("webhook URL refused: 127.0.0.1 is not a public address")
