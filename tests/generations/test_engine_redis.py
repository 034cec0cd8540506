"""Redis restarted during a run: the DB holds every job, the sweep resumes them, every job ends."""

from __future__ import annotations

import pytest

from comfyrouter import embedded_redis
from generations import services
from generations.models import Job
from nodes.models import Node
from tests.generations.conftest import broker_at, register, sweep_until_finished, wait_until
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


class OwnRedis:
    """A Redis of the test's own (the suite's one must stay up), restartable on the same socket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.process = embedded_redis.start(url)

    def stop(self) -> None:
        embedded_redis.stop(self.process)

    def start(self) -> None:
        self.process = embedded_redis.start(self.url)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def own_redis(tmp_path, settings):
    server = OwnRedis(f"unix://{tmp_path / 'redis' / 'redis.sock'}")
    with broker_at(server.url, settings):
        yield server
    server.stop()


def test_every_job_ends_when_redis_restarts_mid_run(own_redis, engine, fakes, user):
    pair = [fakes(step_time=0.05, previews=True) for _ in range(2)]
    for i, fake in enumerate(pair):
        register(fake, f"gpu-{i}", capacity=2)
    engine({"REDIS_URL": own_redis.url})
    jobs = [services.job_create(prompt=txt2img(steps=20), owner=user) for _ in range(6)]
    running = Job.objects.filter(state=Job.State.RUNNING, progress_value__gt=0)
    wait_until(lambda: running.count() >= 2, timeout=15, what="jobs to run")

    own_redis.restart()
    finished = sweep_until_finished(jobs, timeout=25)

    assert [job.state for job in finished] == [Job.State.SUCCEEDED] * len(jobs), [j.error for j in finished]
    assert sum(fake.prompts_received for fake in pair) == len(jobs)
    assert all(job.outputs.count() == 1 for job in finished)
    assert list(Node.objects.values_list("running", flat=True)) == [0, 0]


def test_a_job_submitted_while_redis_is_down_is_accepted_and_runs_once_it_is_back(own_redis, engine, fakes, user):
    fake = fakes()
    register(fake, "gpu")
    engine({"REDIS_URL": own_redis.url})
    own_redis.stop()

    job = services.job_create(prompt=txt2img(), owner=user)

    # Accepted, and claimed for the free node; its execute message could not be sent: the reaper resends it.
    assert job.state == Job.State.ASSIGNED
    own_redis.start()
    [job] = sweep_until_finished([job], timeout=20)
    assert job.state == Job.State.SUCCEEDED, job.error
    assert fake.prompts_received == 1
