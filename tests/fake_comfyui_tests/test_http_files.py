"""POST /upload/image and GET /view against http/post_upload_image_cases.json and http/get_view_cases.json."""

from __future__ import annotations

import io
import re

import httpx
from PIL import Image

from tests.fake_comfyui import FakeComfyUI

from .scenario import prompt_body
from .traces import PROTOCOL_DIR, http_trace, ws_trace


def _png(size: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


ORIGINAL, OTHER, THIRD = _png(8, (255, 0, 0)), _png(8, (0, 255, 0)), _png(8, (0, 0, 255))
# Content per recorded case, in file order: same, same, different, different again, overwrite...
UPLOAD_CONTENTS = [ORIGINAL, ORIGINAL, OTHER, THIRD, OTHER, ORIGINAL, ORIGINAL]


def _upload_case(index: int, case: dict) -> tuple[dict, dict]:
    """(files, data) for one recorded multipart request."""
    multipart = case["request"]["multipart"]
    data = {k: v for k, v in multipart.items() if k != "image"}
    if "image" not in multipart:
        return {}, data
    filename = multipart["image"]["filename"].split(" (")[0].split(" '")[0]
    if filename == "''":
        filename = ""
    if "percent-encoded" in case.get("note", ""):
        filename = "..%2Fevil.png"  # what the recording aiohttp client actually sent
    content = UPLOAD_CONTENTS[index] if index < len(UPLOAD_CONTENTS) else ORIGINAL
    if filename == "not_an_image.png":
        content = b"this is not a png file\n"
    return {"image": (filename, content, "image/png")}, data


def _upload_all(client: httpx.Client) -> None:
    for index, case in enumerate(http_trace("post_upload_image_cases.json")):
        files, data = _upload_case(index, case)
        response = client.post(case["request"]["path"], files=files or None, data=data)
        recorded = case["response"]
        assert response.status_code == recorded["status"], case.get("note")
        assert response.headers.get("Content-Type") == recorded["headers"].get("Content-Type"), case.get("note")
        if "json" in recorded:
            assert response.json() == recorded["json"], case.get("note")


def test_upload_cases_and_load_image_choices(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        _upload_all(client)
        choices = client.get("/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
        recorded = http_trace("get_object_info_LoadImage_after_uploads.json")["response"]["json"]
        assert choices == recorded["LoadImage"]["input"]["required"]["image"][0]
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "proto_upload (1).png"}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
        response = client.post("/prompt", json={"prompt": graph})
        assert response.status_code == 200 and response.json()["node_errors"] == {}
    assert len(fake.uploads) == 13  # the 200 answers of the recording


def _view_path(path: str, temp_name: str) -> str:
    return path.replace("ComfyUI_temp_jsgmu_00001_.png", temp_name)


def test_view_cases(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        _upload_all(client)
        response = client.post("/prompt", json=prompt_body(ws_trace("a_success.submitter")[0]))
        fake.wait_idle()
        prompt_id = response.json()["prompt_id"]
        temp_name = client.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"]["4"]["images"][0]["filename"]
        for case in http_trace("get_view_cases.json"):
            request, recorded = case["request"], case["response"]
            path = _view_path(request["path"], temp_name)
            response = client.request(request["method"], path)
            label = f"{request['method']} {path}"
            assert response.status_code == recorded["status"], label
            for header in ("Content-Type", "Content-Disposition"):
                expected = recorded["headers"].get(header)
                expected = expected and expected.replace("ComfyUI_temp_jsgmu_00001_.png", temp_name)
                assert response.headers.get(header) == expected, label
            for header in ("Etag", "Last-Modified", "Accept-Ranges"):
                assert (header in response.headers) == (header in recorded["headers"]), label
            if "Etag" in recorded["headers"]:
                assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', response.headers["Etag"]), label
            if recorded["status"] == 200 and request["method"] == "GET" and "not_an_image" not in path:
                with Image.open(io.BytesIO(response.content)) as image:
                    first = bytes.fromhex(recorded["first_bytes_hex"])
                    assert image.size == (
                        (64, 64) if "proto_upload" not in path and "sub_" not in path else (8, 8)
                    )
                    assert response.content[:4] == first[:4], label


def test_save_image_subfolder_prefix(fake: FakeComfyUI) -> None:
    recorded = next(iter(http_trace("get_history_success_subfolder_output.json")["response"]["json"].values()))
    graph = recorded["prompt"][2]
    with httpx.Client(base_url=fake.url) as client:
        prompt_id = client.post("/prompt", json={"prompt": graph, "client_id": "clientH"}).json()["prompt_id"]
        fake.wait_idle()
        entry = client.get(f"/history/{prompt_id}").json()[prompt_id]
        assert entry["outputs"] == recorded["outputs"]
        image = entry["outputs"]["2"]["images"][0]
        view = client.get("/view", params=image)
    view_recorded = http_trace("get_view_subfolder_output.json")["response"]
    assert view.status_code == 200 and view.headers["Content-Type"] == view_recorded["headers"]["Content-Type"]
    with Image.open(io.BytesIO(view.content)) as png:
        assert png.size == (32, 32)


def test_outputs_are_byte_identical_to_the_recorded_pngs(fake: FakeComfyUI) -> None:
    with httpx.Client(base_url=fake.url) as client:
        prompt_id = client.post("/prompt", json=prompt_body(ws_trace("a_success.submitter")[0])).json()[
            "prompt_id"
        ]
        fake.wait_idle()
        outputs = client.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"]
        saved = client.get("/view", params=outputs["3"]["images"][0]).content
        preview = client.get("/view", params=outputs["4"]["images"][0]).content
    assert saved == (PROTOCOL_DIR / "view_output_proto_success_00001_.png").read_bytes()
    assert preview == (PROTOCOL_DIR / "view_temp_ComfyUI_temp_00001_.png").read_bytes()
