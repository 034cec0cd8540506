"""Request bodies through a real Daphne: the application parses and answers them, not Twisted."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUN = "/api/endpoints/sd15-txt2img/run"


def test_a_multipart_body_twisted_cannot_parse_is_answered_by_the_api_in_json(daphne, builtin_endpoints, api_key):
    _, raw = api_key
    garbage = {"Content-Type": "multipart/form-data; boundary=zzz"}

    anonymous = httpx.post(daphne.url + RUN, content=b"garbage", headers=garbage, timeout=10)
    no_boundary = httpx.post(
        daphne.url + RUN,
        content=b"garbage",
        headers={"Content-Type": "multipart/form-data", "Authorization": f"Bearer {raw}"},
        timeout=10,
    )

    # Twisted answered both with a bare "400 Bad Request" of its own, before authentication.
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    assert no_boundary.status_code == 400
    assert no_boundary.json() == {
        "detail": "Multipart form parse error - Invalid boundary in multipart: None",
        "code": "parse_error",
    }
