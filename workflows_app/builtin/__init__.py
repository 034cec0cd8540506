"""The built-in endpoints: ready-made ComfyUI workflows that migration 0002 publishes.

Annotation convention. Each input a built-in exposes has its own one-widget tag,
`[<name>:<widget>]`, in its node's `_meta.title`: `Positive prompt [prompt:text]`,
`Empty latent [width:width] [height:height] [batch_size:batch_size]`. A tag that selects a
single widget is addressed by its name alone, so `{"prompt": "a cat", "width": 768}` sets
those widgets; ComfyUI-Fast-API's nested form `{"prompt": {"text": "a cat"}}` names the same
value. A name means the same thing on every built-in:

- `prompt`, `negative_prompt`, `width`, `height`, `batch_size`, `seed`, `steps`: the names the
  OpenAI images mapping looks for first;
- `cfg` (SD) or `guidance` (Flux), `sampler`, `scheduler`, `denoise` (img2img);
- model files: `checkpoint` (SD); `unet`, `weight_dtype`, `clip_l`, `t5xxl`, `vae` (Flux);
- files: `image`, `mask` (with `mask_channel`, `grow_mask_by`) for img2img and inpainting.

The one `SaveImage` of each graph is titled `Save image [images]`: its output is `images`.

`defaults` holds the graph's value of every exposed input except those a caller must send
(`prompt`, `image`, `mask`). This package imports no models, so the migration may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflows_app.builtin import flux_txt2img, sd15_img2img, sd15_inpaint, sd15_txt2img, sdxl_txt2img
from workflows_app.params import parse_title

CALLER_SUPPLIED = frozenset({"prompt", "image", "mask"})


@dataclass(frozen=True)
class BuiltinEndpoint:
    slug: str
    title: str
    description: str
    graph: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)


def exposed_inputs(graph: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Exposed name → (node id, widget) for the one-widget tags of this package's graphs."""
    return {
        tag.name: (node_id, tag.widgets[0])
        for node_id, node in graph.items()
        for tag in parse_title(node.get("_meta", {}).get("title", "")).tags
        if len(tag.widgets) == 1
    }


def graph_defaults(graph: dict[str, Any]) -> dict[str, Any]:
    return {
        name: graph[node_id]["inputs"][widget]
        for name, (node_id, widget) in exposed_inputs(graph).items()
        if name not in CALLER_SUPPLIED
    }


def _builtin(slug: str, module: Any) -> BuiltinEndpoint:
    return BuiltinEndpoint(slug, module.TITLE, module.DESCRIPTION, module.GRAPH, graph_defaults(module.GRAPH))


BUILTINS: list[BuiltinEndpoint] = [
    _builtin("sd15-txt2img", sd15_txt2img),
    _builtin("sdxl-txt2img", sdxl_txt2img),
    _builtin("flux-txt2img", flux_txt2img),
    _builtin("sd15-img2img", sd15_img2img),
    _builtin("sd15-inpaint", sd15_inpaint),
]
