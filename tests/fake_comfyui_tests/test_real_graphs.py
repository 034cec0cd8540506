"""Typical production graphs (SDXL, Flux, img2img, inpaint + LoRA) validate and run on the default models."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

from tests.fake_comfyui import FakeComfyUI

from .wsclient import Recorder, is_text

TEXT = {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}}
KSAMPLER = {"seed": 2**63, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}


def _sdxl() -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "2": TEXT,
        "3": {**TEXT, "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 96, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {**KSAMPLER, "steps": 3, "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0]}
            | {"latent_image": ["4", 0]},
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "sdxl"}},
    }


def _flux() -> dict:
    return {
        "10": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
        },
        "11": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"},
        },
        "12": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "13": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["11", 0]}},
        "14": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["13", 0], "guidance": 3.5}},
        "15": {"class_type": "BasicGuider", "inputs": {"model": ["10", 0], "conditioning": ["14", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["10", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0},
        },
        "18": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "19": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 80, "height": 48, "batch_size": 1}},
        "20": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {"noise": ["18", 0], "guider": ["15", 0], "sampler": ["16", 0], "sigmas": ["17", 0]}
            | {"latent_image": ["19", 0]},
        },
        "21": {"class_type": "VAEDecode", "inputs": {"samples": ["20", 0], "vae": ["12", 0]}},
        "22": {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "flux"}},
    }


def _img2img(inpaint: bool) -> dict:
    graph = _sdxl()
    graph["8"] = {"class_type": "LoadImage", "inputs": {"image": "source.png"}}
    graph["9"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["8", 0], "vae": ["1", 2]}}
    graph["5"]["inputs"] |= {"latent_image": ["9", 0], "denoise": 0.6}
    if inpaint:
        graph["9"] = {
            "class_type": "VAEEncodeForInpaint",
            "inputs": {"pixels": ["8", 0], "vae": ["1", 2], "mask": ["8", 1], "grow_mask_by": 6},
        }
        graph["11"] = {
            "class_type": "LoraLoader",
            "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "example_lora.safetensors"}
            | {"strength_model": 1.0, "strength_clip": 1.0},
        }
        graph["5"]["inputs"]["model"] = ["11", 0]
    del graph["4"]
    return graph


@pytest.mark.parametrize(
    ("graph", "size", "steps"),
    [
        (_sdxl(), (96, 64), 3),
        (_flux(), (80, 48), 4),
        (_img2img(False), (40, 24), 3),
        (_img2img(True), (40, 24), 3),
    ],
    ids=["sdxl", "flux", "img2img", "inpaint_lora"],
)
async def test_graph_runs_and_saves_an_image_of_the_requested_size(
    fake: FakeComfyUI, graph: dict, size: tuple[int, int], steps: int
) -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 24), (10, 20, 30, 255)).save(buffer, format="PNG")
    socket = await Recorder.connect(f"{fake.ws_url}?clientId=real")
    async with httpx.AsyncClient(base_url=fake.url) as http:
        await http.post("/upload/image", files={"image": ("source.png", buffer.getvalue(), "image/png")})
        response = await http.post("/prompt", json={"prompt": graph, "client_id": "real"})
        assert response.status_code == 200 and response.json()["node_errors"] == {}, response.text
        await socket.wait_for(lambda f: is_text(f, "execution_success"))
        progress = [json.loads(f)["data"] for f in socket.frames if is_text(f, "progress")]
        assert [p["value"] for p in progress] == list(range(1, steps + 1))
        prompt_id = response.json()["prompt_id"]
        entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
        image = next(iter(entry["outputs"].values()))["images"][0]
        view = await http.get("/view", params=image)
    with Image.open(io.BytesIO(view.content)) as png:
        assert png.size == size
    await socket.close()


def test_different_seeds_save_different_pixels(fake: FakeComfyUI) -> None:
    digests = set()
    with httpx.Client(base_url=fake.url) as http:
        for seed in (1, 2):
            graph = _sdxl()
            graph["5"]["inputs"]["seed"] = seed
            prompt_id = http.post("/prompt", json={"prompt": graph}).json()["prompt_id"]
            fake.wait_idle()
            image = http.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"]["7"]["images"][0]
            with Image.open(io.BytesIO(http.get("/view", params=image).content)) as png:
                digests.add(png.getpixel((0, 0)))
    assert len(digests) == 2
