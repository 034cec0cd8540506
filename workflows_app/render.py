"""Request inputs → the API-format prompt a ComfyUI node runs.

The API layer calls, in order: `validate_inputs` (a flat or nested body → `{field: value}`),
`randomize_seeds` (an omitted seed becomes random: ComfyUI caches a prompt it has seen, so the
graph's fixed seed would return the same image every call), then, once file inputs are uploaded
to the node and replaced by their ComfyUI file names, `render`.

`[!cache]` nodes stay in their own endpoint's prompt like any other node. The router also adds
every endpoint's `cache_subgraph` to every prompt it sends (`render(..., cache_graphs=...)`):
ComfyUI drops cached results of nodes absent from the prompt it runs, so a loader present in
each prompt keeps its model warm even though nothing consumes it.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import re
import sys
from collections.abc import Iterable, Mapping
from graphlib import TopologicalSorter
from typing import Any

from workflows_app.params import EndpointParams, InputSpec, Param, WorkflowError, is_link, strip_bypassed

SEED_WIDGETS = frozenset({"seed", "noise_seed"})
# ComfyUI's frontend caps random seeds at 2**50 too, so they survive JavaScript clients.
RANDOM_SEED_MAX = 2**50
FILE_RULE = 'must be an http(s) URL or {"type": "file", "name": ..., "content": <base64>}'

_URL = re.compile(r"^https?://[^\s/]+\S*$")
_SHOWN_CHARS = 200


class InputError(ValueError):
    """Every bad input value, each as `{"field", "value", "rule"}`."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['rule']}" for p in problems))
        self.problems = problems


def validate_inputs(params: EndpointParams, inputs: Any) -> dict[str, Any]:
    """The request body, flat or nested, as `{field: coerced value}`; `InputError` lists every bad value."""
    if not isinstance(inputs, Mapping):
        raise InputError([_problem("", inputs, "must be a JSON object")])
    values: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    groups = params.groups
    for key, given in inputs.items():
        for param, value, where in _unpack(groups, str(key), given, problems):
            rule = _rule(param.spec, value)
            if rule:
                problems.append(_problem(where, value, rule))
            else:
                values[param.field] = _coerce(param.spec, value)
    for param in params.inputs:
        if param.spec.is_file and param.field not in values and not _reported(problems, param.field):
            problems.append(_problem(param.field, None, "is required"))
    if problems:
        raise InputError(problems)
    return values


def _unpack(
    groups: Mapping[str, tuple[Param, ...]], name: str, given: Any, problems: list[dict[str, Any]]
) -> list[tuple[Param, Any, str]]:
    group = groups.get(name)
    if group is None:
        problems.append(_problem(name, given, "is not an input of this endpoint"))
        return []
    if group[0].flat and not _is_nested(group[0], given):
        return [(group[0], given, name)]
    if not isinstance(given, Mapping):
        keys = ", ".join(param.widget for param in group)
        problems.append(_problem(name, given, f"must be an object with the keys {keys}"))
        return []
    widgets = {param.widget: param for param in group}
    found = []
    for widget, value in given.items():
        if widget in widgets:
            found.append((widgets[widget], value, f"{name}.{widget}" if len(group) > 1 else name))
        else:
            problems.append(_problem(f"{name}.{widget}", value, "is not an input of this endpoint"))
    return found


def _is_nested(param: Param, given: Any) -> bool:
    # A file object is a mapping too: only `{"<widget>": ...}` is the nested form of a file input.
    return isinstance(given, Mapping) and (not param.spec.is_file or set(given) == {param.widget})


def _rule(spec: InputSpec, value: Any) -> str | None:
    """The rule the value breaks, or None."""
    if spec.type in ("INT", "FLOAT"):
        return _number_rule(spec, value)
    if spec.type == "STRING":
        if not isinstance(value, str):
            return "must be a string"
        too_long = spec.max_length is not None and len(value) > spec.max_length
        return f"must be at most {spec.max_length} characters" if too_long else None
    if spec.type == "BOOLEAN":
        return None if isinstance(value, bool) else "must be true or false"
    if spec.type == "COMBO":
        return _choice_rule(spec, value)
    return _file_rule(value)


def _number_rule(spec: InputSpec, value: Any) -> str | None:
    # JSON Schema counts 5.0 as an integer; 5.5 and true are not.
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if spec.type == "INT" and (isinstance(value, bool) or not integral):
        return "must be an integer"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if spec.minimum is not None and value < spec.minimum:
        return f"must be ≥ {spec.minimum}"
    if spec.maximum is not None and value > spec.maximum:
        return f"must be ≤ {spec.maximum}"
    if spec.type == "FLOAT" and abs(value) > sys.float_info.max:
        return "must be a finite number"
    return None


def _coerce(spec: InputSpec, value: Any) -> Any:
    if spec.type == "FLOAT":
        return float(value)
    return int(value) if spec.type == "INT" else value


def _choice_rule(spec: InputSpec, value: Any) -> str | None:
    # The fleet may have no model files at all: then any name is passed on for ComfyUI to judge.
    if not spec.choices:
        return None if isinstance(value, str) else "must be a string"
    if any(type(value) is type(choice) and value == choice for choice in spec.choices):
        return None
    return "must be one of " + ", ".join(map(str, spec.choices))


def _file_rule(value: Any) -> str | None:
    if isinstance(value, str):
        return None if _URL.match(value) else FILE_RULE
    if not isinstance(value, Mapping) or set(value) != {"type", "name", "content"} or value["type"] != "file":
        return FILE_RULE
    name, content = value["name"], value["content"]
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name:
        return "name must be a file name without a directory"
    if not isinstance(content, str) or not content:
        return "content must be non-empty base64"
    try:
        base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return "content must be base64"
    return None


def _problem(field: str, value: Any, rule: str) -> dict[str, Any]:
    return {"field": field, "value": _shown(value), "rule": rule}


def _shown(value: Any) -> Any:
    # Echoing a 10 MB base64 payload back in an error helps nobody.
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return value[:_SHOWN_CHARS] + "…"
    if isinstance(value, Mapping):
        return {key: _shown(item) for key, item in value.items()}
    return value


def _reported(problems: list[dict[str, Any]], field: str) -> bool:
    return any(problem["field"] == field for problem in problems)


def randomize_seeds(
    params: EndpointParams, values: Mapping[str, Any], *, rng: random.Random | None = None
) -> dict[str, Any]:
    """The values plus a random seed for every exposed `seed` / `noise_seed` the caller left out."""
    rng = rng or random.SystemRandom()
    seeded = dict(values)
    for param in params.inputs:
        if param.widget in SEED_WIDGETS and param.spec.type == "INT" and param.field not in seeded:
            low = int(param.spec.minimum or 0)
            high = RANDOM_SEED_MAX if param.spec.maximum is None else int(param.spec.maximum)
            seeded[param.field] = rng.randint(low, max(low, min(high, RANDOM_SEED_MAX)))
    return seeded


def render(
    graph: Mapping[str, Any],
    params: EndpointParams,
    values: Mapping[str, Any],
    *,
    cache_graphs: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A copy of the graph with the values written in, bypassed nodes removed, cache subgraphs added."""
    fields = params.by_field
    if problems := [problem for item in values.items() if (problem := _unrenderable(fields, *item))]:
        raise InputError(problems)
    prompt = json_copy(dict(graph))
    for field, value in values.items():
        param = fields[field]
        prompt[param.node_id].setdefault("inputs", {})[param.widget] = json_copy(value)
    return merge_cache_nodes(strip_bypassed(prompt, params.bypass), cache_graphs)


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars), as copy.deepcopy makes it: 13 µs for an SD 1.5 graph
    instead of 36. Every graph copy here uses it: a render, and the `[!cache]` nodes merged into each prompt."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


def _unrenderable(fields: Mapping[str, Param], field: str, value: Any) -> dict[str, Any] | None:
    if field not in fields:
        return _problem(field, value, "is not an input of this endpoint")
    if fields[field].spec.is_file and (not isinstance(value, str) or _URL.match(value)):
        return _problem(field, value, "must be uploaded first: render takes the file's name on the node")
    return None


def cache_subgraph(graph: Mapping[str, Any], params: EndpointParams) -> dict[str, Any]:
    """The `[!cache]` nodes of a graph with every node they depend on, as they stand in the graph."""
    wanted = list(params.cache)
    kept: dict[str, Any] = {}
    while wanted:
        node_id = wanted.pop()
        if node_id in kept:
            continue
        kept[node_id] = json_copy(graph[node_id])
        wanted += [value[0] for value in kept[node_id].get("inputs", {}).values() if is_link(value)]
    return kept


def merge_cache_nodes(prompt: Mapping[str, Any], cache_graphs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The prompt plus each cache subgraph, under ids that collide with none; identical nodes are shared."""
    merged = dict(prompt)
    for subgraph in cache_graphs:
        sources = {node_id: _links(node) for node_id, node in subgraph.items()}
        outside = sorted({source for links in sources.values() for source in links} - set(subgraph))
        if outside:
            raise WorkflowError([f"a cache subgraph links to nodes it lacks: {', '.join(outside)}"])
        ids: dict[str, str] = {}
        for node_id in TopologicalSorter(sources).static_order():
            node = json_copy(dict(subgraph[node_id]))
            node["inputs"] = {
                name: [ids[value[0]], value[1]] if is_link(value) else value
                for name, value in node.get("inputs", {}).items()
            }
            ids[node_id] = _twin(merged, node) or _free_id(merged, node_id)
            merged.setdefault(ids[node_id], node)
    return merged


def _links(node: Mapping[str, Any]) -> set[str]:
    return {value[0] for value in node.get("inputs", {}).values() if is_link(value)}


def _twin(prompt: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    return next(
        (
            node_id
            for node_id, other in prompt.items()
            if other.get("class_type") == node.get("class_type") and other.get("inputs") == node["inputs"]
        ),
        None,
    )


def _free_id(prompt: Mapping[str, Any], node_id: str) -> str:
    # No ":" in the id: ComfyUI reads "a:b" as node b inside subgraph a.
    candidate, number = f"cache-{node_id}", 1
    while candidate in prompt:
        number += 1
        candidate = f"cache-{node_id}-{number}"
    return candidate
