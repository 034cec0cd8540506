"""Signed, expiring links to job outputs: usable without credentials until they expire."""

from __future__ import annotations

from django.core import signing

from generations.models import JobOutput

SALT = "comfyrouter.output"


def output_token(output: JobOutput) -> str:
    return signing.TimestampSigner(salt=SALT).sign_object({"job": str(output.job_id), "i": output.index})


def output_from_token(token: str, *, max_age: int) -> JobOutput | None:
    """The output a token names, or None when it is forged, malformed or older than `max_age` s."""
    try:
        claim = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(claim, dict):
        return None
    return JobOutput.objects.filter(job_id=claim.get("job"), index=claim.get("i")).select_related("job").first()
