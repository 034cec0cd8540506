"""OpenAI image parameters → an endpoint's inputs. Pure functions: no database, no network.

An endpoint's *slots* say where each OpenAI parameter lands. An annotated input named `prompt`,
`negative_prompt`, `width`, `height`, `batch_size`, `seed`, `steps`, `image` or `mask` wins;
otherwise the OpenAI proxy's node-type rules find a widget in the graph: the size and batch of
the EmptyLatentImage / EmptySD3LatentImage, the text of the CLIPTextEncode feeding a sampler's
positive / negative input, the sampler's seed and steps, the LoadImage / LoadImageMask file.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflows_app.params import EndpointParams, InputSpec, is_link
from workflows_app.render import RANDOM_SEED_MAX

SLOT_NAMES = ("prompt", "negative_prompt", "width", "height", "batch_size", "seed", "steps", "image", "mask")
LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")
SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "CFGGuider", "BasicGuider")
SEED_SOURCES = (("KSampler", "seed"), ("KSamplerAdvanced", "noise_seed"), ("SamplerCustom", "noise_seed"),
                ("RandomNoise", "noise_seed"))  # fmt: skip
STEP_SOURCES = (("KSampler", "steps"), ("KSamplerAdvanced", "steps"), ("BasicScheduler", "steps"))
# Conditioning nodes the prompt search walks through on its way up from a sampler.
PASS_THROUGH = ("conditioning", "conditioning_to", "conditioning_1", "positive")
PROMPT_PORTS = (("prompt", "positive"), ("prompt", "conditioning"), ("negative_prompt", "negative"))
QUALITY_FACTORS = {"low": 0.5, "medium": 1.0, "auto": 1.0, "standard": 1.0, "high": 1.5, "hd": 1.5}
MAX_N = 10
SIZE_MULTIPLE = 8

_SIZE = re.compile(r"^(\d{1,6})x(\d{1,6})$")


class ParamError(ValueError):
    """A request parameter the endpoint cannot honour; `param` names it as OpenAI does."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Slot:
    node_id: str
    widget: str
    spec: InputSpec
    field: str = ""  # the annotated input's field; "" when the value is written into the graph


@dataclass(frozen=True)
class ImageRequest:
    """The OpenAI parameters that shape the workflow's inputs."""

    prompt: str
    n: int = 1
    size: str = "auto"
    quality: str = "auto"
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None


@dataclass(frozen=True)
class JobPlan:
    """One job to run: the annotated inputs and the values written straight into the graph."""

    inputs: dict[str, Any]
    writes: dict[tuple[str, str], Any]


def endpoint_slots(
    graph: Mapping[str, Any], params: EndpointParams, object_info: Mapping[str, Any]
) -> dict[str, Slot]:
    """Slot name → where it lands: the annotated input of that name, else the graph fallback."""
    slots = {
        param.name: Slot(param.node_id, param.widget, param.spec, param.field)
        for param in params.inputs
        if param.name in SLOT_NAMES and param.flat
    }
    bypassed = set(params.bypass_ids)
    for name, (node_id, widget) in graph_slots(graph).items():
        if name not in slots and node_id not in bypassed:
            slots[name] = Slot(node_id, widget, widget_spec(graph[node_id], widget, object_info))
    return slots


def graph_slots(graph: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The node-type rules: slot name → (node id, widget) for every slot the graph's classes reveal."""
    found: dict[str, tuple[str, str]] = {}
    nodes = sorted(((node_id, node) for node_id, node in graph.items() if isinstance(node, Mapping)), key=_order)
    for node_id, node in nodes:
        kind, values = node.get("class_type"), node.get("inputs", {})
        if kind in LATENTS:
            for widget in ("width", "height", "batch_size"):
                found.setdefault(widget, (node_id, widget))
        for source, widget in SEED_SOURCES:
            if kind == source and not is_link(values.get(widget)):
                found.setdefault("seed", (node_id, widget))
        for source, widget in STEP_SOURCES:
            if kind == source and not is_link(values.get(widget)):
                found.setdefault("steps", (node_id, widget))
        if kind == "LoadImage":
            found.setdefault("image", (node_id, "image"))
        if kind == "LoadImageMask":
            found.setdefault("mask", (node_id, "image"))
        if kind in SAMPLERS:
            for name, port in PROMPT_PORTS:
                if (encoder := text_encoder(graph, values.get(port))) is not None:
                    found.setdefault(name, (encoder, "text"))
    return found


def _order(item: tuple[str, Any]) -> tuple[int, str]:
    # Numeric ids in numeric order, so "the first sampler" means the same as in ComfyUI's UI.
    node_id = item[0]
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def text_encoder(graph: Mapping[str, Any], link: Any, depth: int = 8) -> str | None:
    """The CLIPTextEncode a conditioning link comes from, walking up through conditioning nodes."""
    while is_link(link) and depth > 0:
        node = graph.get(link[0])
        if not isinstance(node, Mapping):
            return None
        values = node.get("inputs", {})
        if node.get("class_type") == "CLIPTextEncode" and not is_link(values.get("text")):
            return link[0]
        link = next((values[port] for port in PASS_THROUGH if is_link(values.get(port))), None)
        depth -= 1
    return None


def widget_spec(node: Mapping[str, Any], widget: str, object_info: Mapping[str, Any]) -> InputSpec:
    """The type and bounds ComfyUI declares for a node's widget, its value in the graph as default."""
    sections = object_info.get(node.get("class_type"), {}).get("input", {})
    declared = {**sections.get("required", {}), **sections.get("optional", {})}.get(widget, ["STRING"])
    options = declared[1] if len(declared) > 1 and isinstance(declared[1], Mapping) else {}
    kind = declared[0] if isinstance(declared[0], str) else "COMBO"
    value = node.get("inputs", {}).get(widget, options.get("default"))
    return InputSpec(kind, value, options.get("min"), options.get("max"), options.get("step"))


def parse_size(size: str, slots: Mapping[str, Slot]) -> tuple[int, int] | None:
    """(width, height) for `WxH`, None for `auto`; `ParamError` naming the rule a size breaks."""
    if size == "auto":
        return None
    match = _SIZE.match(size)
    if match is None:
        raise ParamError("size", f"Invalid size {size!r}: expected 'auto' or WIDTHxHEIGHT, e.g. '512x768'.")
    if "width" not in slots or "height" not in slots:
        raise ParamError("size", "This model takes no size: its output follows its input image. Use 'auto'.")
    return _dimension(int(match[1]), slots["width"].spec, "width"), _dimension(
        int(match[2]), slots["height"].spec, "height"
    )


def _dimension(value: int, spec: InputSpec, what: str) -> int:
    multiple = max(SIZE_MULTIPLE, int(spec.step or 0))
    low, high = int(spec.minimum or multiple), int(spec.maximum or 16384)
    if not low <= value <= high:
        raise ParamError("size", f"Invalid size: {what} {value} is outside this model's range {low}–{high}.")
    if value % multiple:
        raise ParamError("size", f"Invalid size: {what} {value} is not a multiple of {multiple}.")
    return value


def quality_steps(quality: str, base: int) -> int | None:
    """The step count a quality preset means for an endpoint whose default is `base` steps."""
    factor = QUALITY_FACTORS[quality]
    return None if factor == 1.0 else max(1, round(base * factor))


def plan(
    slots: Mapping[str, Slot], request: ImageRequest, *, defaults: Mapping[str, Any], rng: random.Random
) -> list[JobPlan]:
    """The job inputs for a request: n as the batch size when the endpoint has one, else n jobs."""
    if "prompt" not in slots:
        raise ParamError("model", "This model takes no prompt, so the images API cannot drive it.")
    values: dict[str, Any] = {"prompt": request.prompt}
    for name in ("negative_prompt", "seed", "steps"):
        given = getattr(request, name)
        if given is not None and name not in slots:
            raise ParamError(name, f"This model has no {name} input.")
        if given is not None:
            values[name] = given
    if (size := parse_size(request.size, slots)) is not None:
        values["width"], values["height"] = size
    if "steps" in slots and request.steps is None:
        base = slots["steps"]
        steps = quality_steps(request.quality, int(defaults.get(base.field or "steps") or base.spec.default or 20))
        values.update({"steps": steps} if steps is not None else {})
    jobs = 1 if "batch_size" in slots else request.n
    if "batch_size" in slots:
        values["batch_size"] = request.n
    per_job = [dict(values) for _ in range(jobs)]
    for index, job_values in enumerate(per_job):
        if request.seed is not None:
            job_values["seed"] = request.seed + index  # several jobs must not draw the same image
        elif "seed" in slots and not slots["seed"].field:
            # An annotated seed is randomised by endpoint_values; a graph's fixed seed would let
            # ComfyUI answer from its cache with the same image.
            job_values["seed"] = rng.randint(0, RANDOM_SEED_MAX)
    return [split(slots, job_values) for job_values in per_job]


def split(slots: Mapping[str, Slot], values: Mapping[str, Any]) -> JobPlan:
    """Annotated slots become endpoint inputs; the others become graph writes, checked here."""
    inputs, writes = {}, {}
    for name, value in values.items():
        slot = slots[name]
        if slot.field:
            inputs[slot.field] = value
        else:
            check_bounds(name, value, slot.spec)
            writes[(slot.node_id, slot.widget)] = value
    return JobPlan(inputs, writes)


def check_bounds(name: str, value: Any, spec: InputSpec) -> None:
    if isinstance(value, int) and spec.minimum is not None and value < spec.minimum:
        raise ParamError(OPENAI_PARAM.get(name, name), f"{name} must be ≥ {spec.minimum}.")
    if isinstance(value, int) and spec.maximum is not None and value > spec.maximum:
        raise ParamError(OPENAI_PARAM.get(name, name), f"{name} must be ≤ {spec.maximum}.")


def write(prompt: dict[str, Any], writes: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """The rendered prompt with the graph-fallback values written in (nodes bypassed away are skipped)."""
    for (node_id, widget), value in writes.items():
        if node_id in prompt:
            prompt[node_id].setdefault("inputs", {})[widget] = value
    return prompt


# The OpenAI parameter behind each slot, for error messages that name what the caller sent.
OPENAI_PARAM = {"width": "size", "height": "size", "batch_size": "n"}


def param_of(field: str, slots: Mapping[str, Slot]) -> str | None:
    """The OpenAI parameter an endpoint input field came from."""
    name = next((name for name, slot in slots.items() if slot.field == field), field.split(".")[0])
    return OPENAI_PARAM.get(name, name)
