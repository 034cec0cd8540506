"""ComfyClient never hangs: crashes, silent nodes, refused connections, restarts and re-attaching."""

from __future__ import annotations

import time

import pytest

from nodes.comfy import (
    ComfyClient,
    ComfyPromptLost,
    ComfyTimeout,
    ComfyUnavailable,
    Progress,
)
from tests.fake_comfyui import FakeComfyUI
from tests.nodes import graphs


@pytest.fixture
def fake():
    with FakeComfyUI(port=0, step_time=0.0) as server:
        yield server


@pytest.fixture
def client(fake):
    with ComfyClient(fake.url, timeout=5.0) as comfy:
        yield comfy


class Clock:
    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.start


def test_crash_mid_job_raises_unavailable_quickly(client, fake):
    fake.configure(step_time=0.05, fault={"kind": "crash", "node": "3", "at_step": 2})
    events = []

    with Clock() as clock, pytest.raises(ComfyUnavailable) as caught:
        client.run_prompt(graphs.txt2img(steps=20), on_event=events.append, idle_timeout=30.0)

    assert clock.elapsed < 3.0
    assert not isinstance(caught.value, ComfyTimeout)
    assert fake.url in str(caught.value) and "was running" in str(caught.value)
    assert [e.value for e in events if isinstance(e, Progress)] == [1, 2]


def test_crash_from_outside_mid_job_raises_unavailable_quickly(client, fake):
    fake.configure(step_time=0.05)

    def crash_at_step_3(event):
        if isinstance(event, Progress) and event.value == 3:
            fake.crash()

    with Clock() as clock, pytest.raises(ComfyUnavailable):
        client.run_prompt(graphs.txt2img(steps=20), on_event=crash_at_step_3, idle_timeout=30.0)
    assert clock.elapsed < 3.0


def test_silent_node_raises_timeout_within_idle_timeout(client, fake):
    fake.configure(step_time=0.02, fault={"kind": "hang", "node": "3", "at_step": 2})

    with Clock() as clock, pytest.raises(ComfyTimeout) as caught:
        client.run_prompt(graphs.txt2img(steps=20), prompt_id="hung-job", idle_timeout=0.5)

    assert 0.5 <= clock.elapsed < 0.5 + 2.0
    assert str(caught.value) == f"no event from {fake.url} for 0.5 s while prompt hung-job was running"


def test_overall_timeout_bounds_a_slow_prompt(client, fake):
    fake.configure(step_time=0.05)

    with Clock() as clock, pytest.raises(ComfyTimeout):
        client.run_prompt(graphs.txt2img(steps=200), idle_timeout=5.0, timeout=0.5)
    assert clock.elapsed < 2.0


def test_pending_prompt_is_not_mistaken_for_a_hang(client, fake):
    fake.configure(step_time=0.05)
    ahead = client.queue_prompt(graphs.txt2img(steps=16), client_id="someone-else")

    result = client.run_prompt(graphs.INVERT_SAVE, idle_timeout=0.3)

    assert client.history(ahead.prompt_id).status_str == "success"
    assert len(result.outputs) == 4


def test_http_call_to_a_node_that_does_not_answer_times_out(fake):
    fake.configure(fault={"kind": "slow_start", "seconds": 5})

    with ComfyClient(fake.url, timeout=0.3) as client, Clock() as clock, pytest.raises(ComfyTimeout):
        client.system_stats()
    assert clock.elapsed < 2.0


def test_connection_refused_raises_unavailable(fake):
    url = fake.url
    fake.stop()

    with ComfyClient(url, timeout=2.0) as client, Clock() as clock:
        with pytest.raises(ComfyUnavailable) as caught:
            client.system_stats()
        assert url in str(caught.value)
        with pytest.raises(ComfyUnavailable):
            client.run_prompt(graphs.TXT2IMG, idle_timeout=1.0)
    assert clock.elapsed < 3.0


def test_locate_running_pending_finished_and_unknown(client, fake):
    done = client.run_prompt(graphs.INVERT_SAVE, idle_timeout=5.0).prompt_id
    fake.configure(step_time=0.05)
    running = client.queue_prompt(graphs.txt2img(steps=200), client_id="c1").prompt_id
    pending = client.queue_prompt(graphs.txt2img(seed=5), client_id="c2").prompt_id
    time.sleep(0.1)

    assert client.locate(running).state == "running"
    assert client.locate(running).item.client_id == "c1"
    assert client.locate(pending).state == "pending"
    assert client.locate(done).state == "finished"
    assert client.locate(done).history.status_str == "success"
    assert client.locate("never-posted").state == "unknown"


def test_restart_loses_queued_prompts(client, fake):
    fake.configure(step_time=0.05)
    running = client.queue_prompt(graphs.txt2img(steps=200), client_id="c1").prompt_id
    pending = client.queue_prompt(graphs.txt2img(seed=5), client_id="c2").prompt_id

    fake.restart()

    assert client.locate(running).state == "unknown"
    assert client.locate(pending).state == "unknown"
    with pytest.raises(ComfyPromptLost):
        client.reattach(running, client_id="c1", idle_timeout=1.0)


def test_reattach_follows_a_running_prompt_to_its_outputs(client, fake):
    fake.configure(step_time=0.05)
    dead_worker = client.open_events("job-7", idle_timeout=5.0)
    queued = client.queue_prompt(graphs.txt2img(steps=10), client_id="job-7")
    dead_worker.close()
    events = []

    result = client.reattach(queued.prompt_id, on_event=events.append, idle_timeout=5.0)

    assert result.prompt_id == queued.prompt_id
    assert result.outputs[0].node_id == "9"
    assert events[-1].node is None and events[-1].prompt_id == queued.prompt_id


def test_reattach_to_a_finished_prompt_reads_history(client):
    finished = client.run_prompt(graphs.TXT2IMG, idle_timeout=5.0)

    result = client.reattach(finished.prompt_id, client_id="job-8", idle_timeout=5.0)

    assert result.outputs == finished.outputs


def test_a_muted_socket_still_finishes_through_history(client):
    with client.open_events("dup", idle_timeout=0.3) as stream:
        # A second socket with our clientId, then closed, leaves ours silent (ws/h2_reconnect_gotcha).
        client.open_events("dup").close()
        queued = client.queue_prompt(graphs.TXT2IMG, client_id="dup")
        with Clock() as clock:
            result = client.wait(stream, queued.prompt_id)

    assert result.outputs[0].node_id == "9"
    assert clock.elapsed < 2.0


def test_closing_a_stream_mid_job_does_not_wait_for_unread_frames(client, fake):
    fake.configure(step_time=0.005)
    stream = client.open_events("leaver", idle_timeout=5.0)
    client.queue_prompt(graphs.txt2img(steps=100), client_id="leaver")
    time.sleep(0.4)  # dozens of progress and preview frames left unread

    with Clock() as clock:
        stream.close()
    assert clock.elapsed < 1.0
