"""The cache stays under its bound, least recently used first, and never drops a file a live job needs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from generations import cache, tasks
from generations.files import cached_file
from generations.models import CachedFile, Job
from tests.files.conftest import png

pytestmark = pytest.mark.django_db


def entry(shade: int, *, hours_ago: float) -> CachedFile:
    stored = cached_file(data=png((shade, 0, 0)), field="image", name=f"{shade}.png")
    CachedFile.objects.filter(id=stored.id).update(last_used_at=timezone.now() - timedelta(hours=hours_ago))
    stored.refresh_from_db()
    return stored


def job_using(stored: CachedFile, state: str) -> Job:
    job = Job.objects.create(prompt={}, state=state)
    job.input_files.add(stored)
    return job


@pytest.fixture
def four(settings):
    settings.COMFYROUTER_CACHE_MAX_BYTES = 10**9  # no eviction while they are stored
    return [entry(shade, hours_ago=hours) for shade, hours in ((10, 4), (20, 3), (30, 2), (40, 1))]


def names(queryset=None) -> list[str]:
    return sorted(e.original_name for e in (queryset or CachedFile.objects.all()))


def test_the_least_recently_used_go_first_until_the_cache_fits(four, settings, django_capture_on_commit_callbacks):
    settings.COMFYROUTER_CACHE_MAX_BYTES = four[2].size + four[3].size

    with django_capture_on_commit_callbacks(execute=True):
        assert cache.cache_evict() == 2

    assert names() == ["30.png", "40.png"]
    assert not any(default_storage.exists(e.file.name) for e in four[:2])
    assert all(default_storage.exists(e.file.name) for e in four[2:])


def test_a_file_used_again_moves_to_the_back_of_the_line(four, settings):
    cached_file(data=png((10, 0, 0)), field="image")  # the oldest, touched now
    settings.COMFYROUTER_CACHE_MAX_BYTES = four[0].size + four[3].size

    cache.cache_evict(recent=True)

    assert names() == ["10.png", "40.png"]


@pytest.mark.parametrize("state", [Job.State.QUEUED, Job.State.ASSIGNED, Job.State.RUNNING])
def test_files_of_a_queued_or_running_job_are_never_evicted(four, settings, state):
    job_using(four[0], state)
    job_using(four[1], Job.State.SUCCEEDED)
    settings.COMFYROUTER_CACHE_MAX_BYTES = 0

    assert cache.cache_evict() == 3

    assert names() == ["10.png"]


def test_files_used_in_the_last_minutes_stay_while_a_request_may_still_need_them(four, settings):
    fresh = entry(50, hours_ago=0)
    settings.COMFYROUTER_CACHE_MAX_BYTES = 0

    cache.cache_evict()

    assert names() == [fresh.original_name]


def test_a_file_touched_after_eviction_read_it_is_kept(four):
    stale = four[0]
    cached_file(data=png((10, 0, 0)), field="image")

    assert cache.cache_file_delete(entry=stale) is False
    assert CachedFile.objects.filter(id=stale.id).exists()


def test_storing_a_file_evicts_to_make_room(four, settings):
    settings.COMFYROUTER_CACHE_MAX_BYTES = sum(e.size for e in four)

    cached_file(data=png((99, 0, 0)), field="image", name="new.png")

    assert names() == ["20.png", "30.png", "40.png", "new.png"]


def test_the_beat_task_evicts(four, settings):
    settings.COMFYROUTER_CACHE_MAX_BYTES = four[3].size

    tasks.evict_cache()

    assert names() == ["40.png"]


def test_purge_drops_everything_no_live_job_needs(four, settings):
    job_using(four[2], Job.State.QUEUED)

    assert cache.cache_purge() == 3
    assert names() == ["30.png"]
    summary = cache.cache_summary()
    assert summary == cache.CacheSummary(1, four[2].size, 0, settings.COMFYROUTER_CACHE_MAX_BYTES, 1)


def test_the_admin_shows_the_cache_and_purges_it(four, client, operator):
    job_using(four[3], Job.State.RUNNING)
    cached_file(data=png((40, 0, 0)), field="image")
    client.force_login(operator)
    url = "/admin/generations/cachedfile/"

    page = client.get(url).content.decode()

    assert 'id="cache-summary"' in page and "4 files" in page and "1 cache hit" in page and "1 in use" in page
    response = client.post(url, {"action": "purge_selected", "_selected_action": [four[0].id, four[3].id]})
    assert response.status_code == 302 and names() == ["20.png", "30.png", "40.png"]
    assert client.get("/admin/generations/cachedfile/purge/").status_code == 405
    assert client.post("/admin/generations/cachedfile/purge/").status_code == 302
    assert names() == ["40.png"]
