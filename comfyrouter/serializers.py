"""What every request body's serializer shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class BodySerializer(serializers.Serializer):
    """A request body that refuses the fields it does not know, instead of ignoring them.

    Ignored, a misspelt field (`"input"` for `"inputs"`, `"capcity"`) ran a job or saved a change with the
    defaults and answered success. So did a JSON body sent as a form (`curl -d` without a Content-Type): its
    whole text became one form field's name.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: [self._unknown(name)] for name in unknown})
        return super().to_internal_value(data)

    def _unknown(self, name: str) -> str:
        takes = f"Unknown field: this body takes {', '.join(self.fields)}."
        if name.lstrip().startswith(("{", "[")):
            return f"{takes} A JSON body needs the header Content-Type: application/json."
        return takes
