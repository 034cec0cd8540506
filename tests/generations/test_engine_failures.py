"""Failure rules of the job engine: lost nodes, hangs, ComfyUI errors, missing models, queue timeout."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from generations import services
from generations.models import Job
from generations.tasks import sweep
from nodes.models import Node
from tests.fake_comfyui import DEFAULT_MODELS
from tests.generations.conftest import fake_of, register, wait_finished, wait_running
from tests.generations.graphs import txt2img

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_node_killed_mid_job_hands_the_job_to_the_other_node(engine, fakes, user):
    engine()
    pair = [fakes(step_time=0.1, previews=False) for _ in range(2)]
    for i, fake in enumerate(pair):
        register(fake, f"gpu-{i}")
    job = services.job_create(prompt=txt2img(steps=20), owner=user)

    first = wait_running(job)
    doomed = fake_of(first, pair)
    survivor = next(fake for fake in pair if fake is not doomed)
    survivor.configure(step_time=0.0)
    doomed.crash()

    [job] = wait_finished([job], timeout=20)
    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.node.base_url == survivor.url and job.attempts == 2
    lost = Node.objects.get(base_url=doomed.url)
    assert lost.status == Node.Status.OFFLINE and lost.last_error
    assert survivor.prompts_received == 1 and job.outputs.count() == 1


def test_every_node_dead_fails_the_job_naming_the_node_and_cause(engine, fakes, user):
    engine(COMFYROUTER_MAX_ATTEMPTS=2)
    for i in range(2):
        register(fakes(step_time=0.02, fault={"kind": "crash", "at_step": 2}), f"gpu-{i}")
    started = time.monotonic()

    [job] = wait_finished([services.job_create(prompt=txt2img(steps=10), owner=user)], timeout=20)

    assert job.state == Job.State.FAILED
    assert job.error.startswith(f"Node {job.node.name} was lost (")
    assert "gave up after 2 attempt(s)" in job.error and job.attempts == 2
    assert time.monotonic() - started < 15
    assert set(Node.objects.values_list("status", flat=True)) == {Node.Status.OFFLINE}


def test_an_output_over_the_size_limit_fails_the_job_at_once_and_keeps_no_file(engine, fakes, user):
    engine(COMFYROUTER_MAX_OUTPUT_BYTES=1024)
    register(fakes(), "gpu")

    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)], timeout=20)

    assert job.state == Job.State.FAILED and job.attempts == 1  # the same image would be as big anywhere
    assert job.error.startswith("Output too large to keep (") and "more than 1024 bytes of" in job.error
    assert job.outputs.count() == 0 and Node.objects.get().status != Node.Status.OFFLINE


def test_a_hanging_node_loses_the_job_to_another_after_the_idle_timeout(engine, fakes, user):
    engine(COMFYROUTER_IDLE_TIMEOUT=1)
    hanging = fakes(step_time=0.05, fault={"kind": "hang", "at_step": 15})
    register(hanging, "gpu-hangs")
    job = services.job_create(prompt=txt2img(steps=20), owner=user)
    wait_running(job)
    healthy = fakes()
    register(healthy, "gpu-ok")

    [job] = wait_finished([job], timeout=20)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.node.name == "gpu-ok" and job.attempts == 2
    assert Node.objects.get(name="gpu-hangs").status == Node.Status.OFFLINE
    assert "no event" in Node.objects.get(name="gpu-hangs").last_error
    assert hanging.prompts_received == healthy.prompts_received == 1


def test_a_runtime_error_fails_at_once_with_comfyuis_message_and_node(engine, fakes, user):
    engine()
    fault = {"kind": "runtime_error", "node": "3", "exception_type": "RuntimeError", "exception_message": "boom"}
    pair = [fakes(fault=fault) for _ in range(2)]
    for i, fake in enumerate(pair):
        register(fake, f"gpu-{i}")

    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)])

    assert job.state == Job.State.FAILED
    assert "boom" in job.error and "RuntimeError" in job.error and job.error_node == "3"
    assert job.attempts == 1 and sum(fake.prompts_received for fake in pair) == 1
    assert set(Node.objects.values_list("status", flat=True)) == {Node.Status.IDLE}


def test_a_prompt_comfyui_rejects_fails_at_once_with_its_message(engine, fakes, user):
    engine()
    pair = [fakes() for _ in range(2)]
    for i, fake in enumerate(pair):
        register(fake, f"gpu-{i}")
    prompt = txt2img()
    prompt["3"]["inputs"]["steps"] = 0  # below KSampler's minimum: only ComfyUI's validation sees it

    [job] = wait_finished([services.job_create(prompt=prompt, owner=user)])

    assert job.state == Job.State.FAILED
    assert job.error.startswith("ComfyUI rejected the prompt: Prompt outputs failed validation")
    assert "Value 0 smaller than min of 1" in job.error and job.error_node == "3"
    assert job.attempts == 1 and sum(fake.stats.prompts_rejected for fake in pair) == 1
    assert sum(fake.prompts_received for fake in pair) == 0


def test_a_reject_fault_is_not_retried_on_another_node(engine, fakes, user):
    engine()
    pair = [fakes(fault={"kind": "reject", "type": "invalid_prompt"}) for _ in range(2)]
    for i, fake in enumerate(pair):
        register(fake, f"gpu-{i}")

    [job] = wait_finished([services.job_create(prompt=txt2img(), owner=user)])

    assert job.state == Job.State.FAILED and job.error.startswith("ComfyUI rejected the prompt: ")
    assert job.attempts == 1 and sum(fake.stats.prompts_rejected for fake in pair) == 1


def test_a_job_needing_models_no_node_has_fails_at_once_naming_them(db, fakes, user):
    has_lora = {**DEFAULT_MODELS, "checkpoints": ["other.safetensors"]}
    has_ckpt = {**DEFAULT_MODELS, "loras": []}
    register(fakes(models=has_lora), "gpu-lora")
    register(fakes(models=has_ckpt), "gpu-ckpt")
    prompt = txt2img()
    prompt["10"] = {
        "class_type": "LoraLoader",
        "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "example_lora.safetensors",
                   "strength_model": 1.0, "strength_clip": 1.0},
    }  # fmt: skip

    job = services.job_create(prompt=prompt, owner=user)

    assert job.state == Job.State.FAILED and job.node is None and job.attempts == 0
    assert "loras: example_lora.safetensors" in job.error or "v1-5-pruned-emaonly" in job.error
    assert job.error.startswith("No registered node has the models this job needs — missing ")


def test_a_queued_job_with_no_node_fails_after_the_queue_timeout(worker_env, settings, user):
    settings.COMFYROUTER_QUEUE_TIMEOUT = 1
    job = services.job_create(prompt=txt2img(), owner=user)
    sweep()
    assert Job.objects.get(id=job.id).state == Job.State.QUEUED
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(seconds=2))

    sweep()

    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.error == "No node could take this job in 1 s (no node is registered)."


def test_a_queued_job_names_the_offline_nodes_when_it_times_out(worker_env, settings, fakes, user):
    settings.COMFYROUTER_QUEUE_TIMEOUT = 1
    register(fakes(), "gpu-down", status=Node.Status.OFFLINE)
    job = services.job_create(prompt=txt2img(), owner=user)
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(seconds=2))

    sweep()

    job.refresh_from_db()
    assert job.error == "No node could take this job in 1 s (every node is offline: gpu-down)."


def test_the_queue_timeout_counts_from_a_requeue_not_from_the_jobs_creation(worker_env, settings, fakes, user):
    settings.COMFYROUTER_QUEUE_TIMEOUT = 60
    gpu = register(fakes(), "gpu", capacity=1, running=1)  # busy with another job: the requeued one waits
    Job.objects.create(prompt=txt2img(), owner=user, state=Job.State.RUNNING, node=gpu, assigned_at=timezone.now(),
                       heartbeat_at=timezone.now())  # fmt: skip
    lost = register(fakes(), "lost", status=Node.Status.OFFLINE, running=1)  # where the job ran
    job = services.job_create(prompt=txt2img(), owner=user)
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Job.objects.filter(id=job.id).update(state=Job.State.RUNNING, node=lost, assigned_at=two_hours_ago,
                                         created_at=two_hours_ago, attempts=1)  # fmt: skip
    job.refresh_from_db()
    services.job_requeue(job=job, cause="the node restarted")

    sweep()

    job.refresh_from_db()
    assert job.state == Job.State.QUEUED, job.error
    # A queued job keeps the time it was requeued in heartbeat_at.
    Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    sweep()
    assert Job.objects.get(id=job.id).state == Job.State.FAILED
