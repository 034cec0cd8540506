"""Validation of OpenAI images requests: OpenAI's parameters plus `negative_prompt`, `seed`, `steps`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from generations.openai.errors import bad_request
from generations.openai.mapping import MAX_N, QUALITY_FACTORS

DEFAULT_GENERATION_MODEL = "sd15-txt2img"
DEFAULT_EDIT_MODEL = "sd15-img2img"
DEFAULT_INPAINT_MODEL = "sd15-inpaint"
MAX_PROMPT = 32_000


class StrictString(serializers.CharField):
    """A JSON string, never a number or a boolean turned into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ImageGenerationInput(serializers.Serializer):
    model = StrictString(required=False, max_length=100)
    prompt = StrictString(max_length=MAX_PROMPT)
    n = serializers.IntegerField(required=False, default=1, min_value=1, max_value=MAX_N)
    size = StrictString(required=False, default="auto", max_length=20)
    response_format = serializers.ChoiceField(["url", "b64_json"], required=False)
    output_format = serializers.ChoiceField(["png", "jpeg", "webp"], required=False, default="png")
    output_compression = serializers.IntegerField(required=False, default=90, min_value=0, max_value=100)
    quality = serializers.ChoiceField(sorted(QUALITY_FACTORS), required=False, default="auto")
    background = serializers.ChoiceField(["auto", "opaque"], required=False, default="auto")
    moderation = serializers.ChoiceField(["low", "auto"], required=False)
    style = serializers.ChoiceField(["vivid", "natural"], required=False)
    user = StrictString(required=False, max_length=256, allow_blank=True)
    safety_identifier = StrictString(required=False, max_length=256, allow_blank=True)
    stream = serializers.BooleanField(required=False, default=False)
    partial_images = serializers.IntegerField(required=False, default=0, min_value=0, max_value=3)
    negative_prompt = StrictString(required=False, max_length=MAX_PROMPT, allow_blank=True)
    seed = serializers.IntegerField(required=False, min_value=0)
    steps = serializers.IntegerField(required=False, min_value=1, max_value=10_000)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("partial_images") and not data.get("stream"):
            raise serializers.ValidationError({"partial_images": "partial_images needs stream: true."})
        return data


class ImageEditInput(ImageGenerationInput):
    style = None
    input_fidelity = serializers.ChoiceField(["high", "low"], required=False)


def request_fields(data: Any, serializer: type[serializers.Serializer]) -> dict[str, Any]:
    """The validated parameters of a JSON object or form; unknown ones refused as OpenAI does."""
    if not hasattr(data, "items"):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    # The SDK sends null for an Optional parameter set to None: that means "the default".
    given = {key: value for key, value in data.items() if value is not None}
    known = set(serializer().fields)
    if unknown := sorted(set(given) - known):
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter")
    validated = serializer(data=given)
    validated.is_valid(raise_exception=True)
    return dict(validated.validated_data)
