"""Job outputs: files fetched from a node's /view into Django storage, one JobOutput row each."""

from __future__ import annotations

import hashlib
import io
import mimetypes
from collections.abc import Iterable, Mapping

from django.core.files.base import ContentFile
from django.utils.text import get_valid_filename
from PIL import Image, UnidentifiedImageError

from generations.models import Job, JobOutput
from nodes.comfy import ComfyClient, OutputFile


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height read from the image header; (None, None) for other files."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        return None, None


def fetch_outputs(
    *, job: Job, client: ComfyClient, files: Iterable[OutputFile], titles: Mapping[str, str]
) -> list[JobOutput]:
    """Download every output file of a finished prompt into storage; the rows are saved by `record_outputs`."""
    return [
        _fetch(
            job, index, f, client.view(f.filename, subfolder=f.subfolder, kind=f.type), titles.get(f.node_id, "")
        )
        for index, f in enumerate(files)
    ]


def record_outputs(records: list[JobOutput]) -> None:
    """Save the job's output rows: called once, in the transaction that marks the job succeeded."""
    JobOutput.objects.bulk_create(records)


def discard_outputs(records: Iterable[JobOutput]) -> None:
    """Delete fetched files whose rows will never be saved (the job ended another way meanwhile)."""
    for record in records:
        record.file.delete(save=False)


def _fetch(job: Job, index: int, output: OutputFile, data: bytes, title: str) -> JobOutput:
    width, height = image_size(data)
    name = get_valid_filename(output.filename) or f"output-{index}"
    record = JobOutput(
        job=job, index=index, node_id=output.node_id, node_title=title[:200], filename=output.filename[:255],
        kind=output.type, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        size=len(data), width=width, height=height, sha256=hashlib.sha256(data).hexdigest(),
    )  # fmt: skip
    record.file.save(f"{job.id}/{index:02d}-{name}", ContentFile(data), save=False)
    return record
