"""The input-file cache: its size bound (least recently used goes first) and what each node already holds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from comfyrouter.redisconn import redis_client
from generations.models import CachedFile, Job

# A file touched this recently may belong to a request between resolving its inputs and creating its
# job (no active job points at it yet); eviction leaves it alone.
RECENT_SECONDS = 300
# What a node holds is remembered this long, then checked again against its LoadImage choices.
NODE_MEMORY_SECONDS = 3600
KNOWN = "-"  # a member that marks a node's set as filled, even when it holds none of our files


def in_use() -> Q:
    """Cache entries a queued, assigned or running job needs: never evicted."""
    return Q(jobs__state__in=Job.ACTIVE_STATES)


def cache_evict(*, max_bytes: int | None = None, keep: Iterable[int] = (), recent: bool = False) -> int:
    """Delete least-recently-used files until the cache fits `max_bytes`; returns how many went."""
    limit = settings.COMFYROUTER_CACHE_MAX_BYTES if max_bytes is None else max_bytes
    total = CachedFile.objects.aggregate(total=Sum("size"))["total"] or 0
    candidates = CachedFile.objects.exclude(in_use()).exclude(id__in=list(keep))
    if not recent:
        candidates = candidates.filter(last_used_at__lt=timezone.now() - timedelta(seconds=RECENT_SECONDS))
    evicted = 0
    for entry in candidates.order_by("last_used_at", "id").iterator():
        if total <= limit:
            break
        if cache_file_delete(entry=entry):
            total -= entry.size
            evicted += 1
    return evicted


def cache_file_delete(*, entry: CachedFile) -> bool:
    """Delete one entry and its file unless a job took it or someone used it since it was read."""
    # Conditional on last_used_at: a request that touched the file after our read keeps it.
    with transaction.atomic():
        gone = CachedFile.objects.filter(id=entry.id, last_used_at=entry.last_used_at).exclude(in_use())
        if not gone.delete()[0]:
            return False
        transaction.on_commit(lambda: entry.file.delete(save=False))
    return True


def cache_purge(entries: Iterable[CachedFile] | None = None) -> int:
    """Drop every entry (or the given ones) that no active job needs; returns how many went."""
    chosen = CachedFile.objects.all() if entries is None else entries
    return sum(cache_file_delete(entry=entry) for entry in chosen if not _needed(entry))


def _needed(entry: CachedFile) -> bool:
    return entry.jobs.filter(state__in=Job.ACTIVE_STATES).exists()


@dataclass(frozen=True)
class CacheSummary:
    files: int
    bytes: int
    hits: int
    max_bytes: int
    in_use: int


def cache_summary() -> CacheSummary:
    """Totals for the admin: how full the cache is and how much it is used."""
    totals = CachedFile.objects.aggregate(files=Count("id"), bytes=Sum("size"), hits=Sum("hits"))
    used = CachedFile.objects.filter(in_use()).distinct().count()
    return CacheSummary(totals["files"], totals["bytes"] or 0, totals["hits"] or 0,
                        settings.COMFYROUTER_CACHE_MAX_BYTES, used)  # fmt: skip


def node_key(node) -> str:
    """The Redis set of file names a node holds; a node moved to another address starts afresh."""
    where = hashlib.sha256(node.base_url.encode()).hexdigest()[:12]
    return f"comfyrouter:node-files:{node.id}:{where}"


def node_files(node) -> set[str] | None:
    """Names of our files a node is known to hold, or None when not known (ask the node)."""
    with suppress(redis.RedisError):
        names = {name.decode() for name in redis_client().smembers(node_key(node))}
        return names - {KNOWN} if KNOWN in names else None
    return None


def node_files_add(node, names: Iterable[str]) -> None:
    """Remember that a node holds these files (and that its set is filled)."""
    with suppress(redis.RedisError):
        client = redis_client()
        client.sadd(node_key(node), KNOWN, *names)
        client.expire(node_key(node), NODE_MEMORY_SECONDS)


def node_files_forget(node) -> None:
    """Forget what a node holds: call when it restarts or goes offline; the next job asks it again."""
    with suppress(redis.RedisError):
        redis_client().delete(node_key(node))
