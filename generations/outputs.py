"""Job outputs: files fetched from a node's /view into Django storage, one JobOutput row each."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import tempfile
from collections.abc import Iterable, Mapping
from typing import IO

from django.conf import settings
from django.core.files.base import File
from django.utils.text import get_valid_filename
from PIL import Image, UnidentifiedImageError

from generations.models import Job, JobOutput
from nodes.comfy import ComfyClient, OutputFile

# An output up to this size stays in memory on its way to storage; a bigger one (a video) goes through a
# temporary file.
SPOOL_BYTES = 8 * 1024 * 1024


def image_size(data: bytes | IO[bytes]) -> tuple[int | None, int | None]:
    """Width and height read from the image header (of bytes, or a file from its current position); (None,
    None) for other files."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        return None, None


def fetch_outputs(
    *, job: Job, client: ComfyClient, files: Iterable[OutputFile], titles: Mapping[str, str]
) -> list[JobOutput]:
    """Download every output file of a finished prompt into storage; the rows are saved by `record_outputs`.

    A file over COMFYROUTER_MAX_OUTPUT_BYTES raises ComfyFileTooLarge. Should any file fail, those already
    stored are deleted.
    """
    records: list[JobOutput] = []
    try:
        for index, output in enumerate(files):
            records.append(_fetch(job, index, output, client, titles.get(output.node_id, "")))
    except BaseException:
        discard_outputs(records)
        raise
    return records


def record_outputs(records: list[JobOutput]) -> None:
    """Save the job's output rows: called once, in the transaction that marks the job succeeded."""
    JobOutput.objects.bulk_create(records)


def discard_outputs(records: Iterable[JobOutput]) -> None:
    """Delete fetched files whose rows will never be saved (the job ended another way meanwhile)."""
    for record in records:
        record.file.delete(save=False)


class _Digest:
    """Passes what is written on to `file`, counting and hashing it."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.size, self.sha256 = file, 0, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.sha256.update(data)
        self.file.write(data)


def _fetch(job: Job, index: int, output: OutputFile, client: ComfyClient, title: str) -> JobOutput:
    name = get_valid_filename(output.filename) or f"output-{index}"
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        digest = _Digest(spool)
        client.view_into(
            digest, output.filename, subfolder=output.subfolder, kind=output.type,
            limit=settings.COMFYROUTER_MAX_OUTPUT_BYTES,
        )  # fmt: skip
        spool.seek(0)
        width, height = image_size(spool)
        record = JobOutput(
            job=job, index=index, node_id=output.node_id, node_title=title[:200], filename=output.filename[:255],
            kind=output.type, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
            size=digest.size, width=width, height=height, sha256=digest.sha256.hexdigest(),
        )  # fmt: skip
        content = File(spool, name=name)
        content.size = digest.size
        record.file.save(f"{job.id}/{index:02d}-{name}", content, save=False)
    return record
