"""Title annotations of an API-format graph: which inputs an endpoint exposes, what it returns.

Syntax, in a node's `_meta.title`:

- `[name]` exposes every widget input of the node under `name`; on an output node (`SaveImage`,
  `PreviewImage`, any class with `output_node: true`) it names an output instead;
- `[name:seed,steps]` exposes only those widgets (on any node, output nodes included);
- `[!bypass]` removes the node for API runs, its consumers rewired as ComfyUI's own bypass does;
- `[!cache]` marks a node the router adds to every prompt, so ComfyUI keeps its result warm.

Bracket rule: every `[...]` group that holds no bracket is a tag, wherever it stands in the
title, and several may follow each other (`KSampler [seed:seed] [!cache]`). Any other `[` or `]`
(nested, unbalanced, stray) is an error, so a title never means something by accident. Names and
widget lists are trimmed (`[ my sampler : seed , steps ]`); names may hold any other character.

A tag that resolves to one widget is addressed by its name alone (`{"seed": 5}`); a tag with
several is addressed nested (`{"sampler": {"seed": 5}}`). The nested form works for one-widget
tags too (`{"prompt": {"text": "a cat"}}`), as in ComfyUI-Fast-API. A `Param.field` names one
value: `seed` when flat, `sampler.seed` when nested.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FLAGS = frozenset({"bypass", "cache"})
FILE_TYPES = frozenset({"IMAGE", "MASK"})
MAX_STRING_LENGTH = 20_000

_GROUP = re.compile(r"\[([^\[\]]*)\]")


class AnnotationError(ValueError):
    """A malformed title tag."""


class WorkflowError(ValueError):
    """Everything wrong with a graph's annotations at once."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Tag:
    name: str
    widgets: tuple[str, ...] = ()  # empty: every widget of the node


@dataclass(frozen=True)
class TitleTags:
    tags: tuple[Tag, ...] = ()
    bypass: bool = False
    cache: bool = False


@dataclass(frozen=True)
class InputSpec:
    type: str  # INT FLOAT STRING BOOLEAN COMBO IMAGE MASK
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    step: int | float | None = None
    choices: tuple[Any, ...] = ()
    multiline: bool = False
    max_length: int | None = None

    @property
    def is_file(self) -> bool:
        return self.type in FILE_TYPES


@dataclass(frozen=True)
class Param:
    name: str
    node_id: str
    widget: str
    spec: InputSpec
    flat: bool = True

    @property
    def field(self) -> str:
        return self.name if self.flat else f"{self.name}.{self.widget}"


@dataclass(frozen=True)
class Output:
    name: str
    node_id: str


@dataclass(frozen=True)
class Bypass:
    """A bypassed node; `routes[slot]` is the input that stands in for output `slot`, or None."""

    node_id: str
    class_type: str
    output_types: tuple[str, ...]
    routes: tuple[str | None, ...]


@dataclass(frozen=True)
class EndpointParams:
    inputs: tuple[Param, ...] = ()
    outputs: tuple[Output, ...] = ()
    bypass: tuple[Bypass, ...] = ()
    cache: tuple[str, ...] = ()

    # Computed once: a version's params are built once per process (version_params) and read by every run.
    @functools.cached_property
    def groups(self) -> dict[str, tuple[Param, ...]]:
        groups: dict[str, tuple[Param, ...]] = {}
        for param in self.inputs:
            groups[param.name] = (*groups.get(param.name, ()), param)
        return groups

    @property
    def bypass_ids(self) -> tuple[str, ...]:
        return tuple(bypass.node_id for bypass in self.bypass)

    @functools.cached_property
    def by_field(self) -> dict[str, Param]:
        return {param.field: param for param in self.inputs}


def parse_title(title: str) -> TitleTags:
    """The tags and flags of one node title; `AnnotationError` when one is malformed."""
    outside = _GROUP.sub("", title)
    if "[" in outside or "]" in outside:
        raise AnnotationError(f"unbalanced or nested bracket in title {title!r}")
    tags: list[Tag] = []
    flags: set[str] = set()
    for body in _GROUP.findall(title):
        if body.strip().startswith("!"):
            flags.add(_parse_flag(body))
            continue
        tag = _parse_tag(body)
        if any(seen.name == tag.name for seen in tags):
            raise AnnotationError(f"[{tag.name}] appears twice in title {title!r}")
        tags.append(tag)
    return TitleTags(tuple(tags), bypass="bypass" in flags, cache="cache" in flags)


def _parse_flag(body: str) -> str:
    flag = body.strip()[1:].strip()
    if flag not in FLAGS:
        raise AnnotationError(f"unknown tag [{body}]: the ! tags are [!bypass] and [!cache]")
    return flag


def _parse_tag(body: str) -> Tag:
    name, colon, widget_list = (part.strip() for part in body.partition(":"))
    if not name:
        raise AnnotationError(f"tag [{body}] has no name")
    if not colon:
        return Tag(name)
    widgets = tuple(widget.strip() for widget in widget_list.split(","))
    if not all(widgets):
        raise AnnotationError(f"tag [{body}] has an empty widget name")
    if len(set(widgets)) != len(widgets):
        raise AnnotationError(f"tag [{body}] lists a widget twice")
    return Tag(name, widgets)


def collect_params(graph: Mapping[str, Any], object_info: Mapping[str, Any]) -> EndpointParams:
    """The inputs, outputs, bypassed and cached nodes the titles declare; `WorkflowError` lists all faults."""
    errors: list[str] = []
    inputs: list[Param] = []
    outputs: list[Output] = []
    bypass: list[Bypass] = []
    cache: list[str] = []
    # By node id, not by dict order: PostgreSQL's jsonb does not keep the order a graph was written in.
    for node_id, node in sorted(graph.items(), key=lambda item: node_order(item[0])):
        tags, info, problems = _annotations(node_id, node, object_info)
        errors += problems
        if tags is None or info is None:
            continue
        if tags.bypass:
            bypass.append(bypass_routes(node_id, node, info))
        cache += [node_id] if tags.cache else []
        for tag in tags.tags:
            found, problems = _resolve_tag(node_id, node, info, tag)
            inputs += [item for item in found if isinstance(item, Param)]
            outputs += [item for item in found if isinstance(item, Output)]
            errors += problems
    errors += _duplicates(inputs, outputs) + _bypass_problems(graph, bypass)
    if errors:
        raise WorkflowError(errors)
    return EndpointParams(tuple(inputs), tuple(outputs), tuple(bypass), tuple(cache))


def node_order(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in number order, then any others by name."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _annotations(
    node_id: str, node: Any, object_info: Mapping[str, Any]
) -> tuple[TitleTags | None, Mapping[str, Any] | None, list[str]]:
    """A node's tags and object_info, or the problems that stop it from being read."""
    if not isinstance(node, Mapping):
        return None, None, [f"node {node_id}: not a {{class_type, inputs}} object"]
    try:
        meta = node.get("_meta")
        tags = parse_title(str(meta.get("title", "")) if isinstance(meta, Mapping) else "")
    except AnnotationError as error:
        return None, None, [f"node {node_id}: {error}"]
    if not (tags.tags or tags.bypass or tags.cache):
        return None, None, []
    info = object_info.get(node.get("class_type")) if isinstance(node.get("class_type"), str) else None
    if info is None:
        return None, None, [f"node {node_id}: unknown class {node.get('class_type')!r}"]
    flag_errors = _node_flags(node_id, tags)
    return (None, None, flag_errors) if flag_errors else (tags, info, [])


def _node_flags(node_id: str, tags: TitleTags) -> list[str]:
    if tags.bypass and tags.cache:
        return [f"node {node_id}: [!bypass] and [!cache] exclude each other"]
    if tags.bypass and tags.tags:
        return [f"node {node_id}: a [!bypass] node cannot expose [{tags.tags[0].name}]"]
    return []


def _resolve_tag(
    node_id: str, node: Mapping[str, Any], info: Mapping[str, Any], tag: Tag
) -> tuple[list[Param | Output], list[str]]:
    where = f"node {node_id} ({node['class_type']}) [{tag.name}]"
    if not tag.widgets and info.get("output_node"):
        return [Output(tag.name, node_id)], []
    declared = _declared_inputs(info)
    values = node.get("inputs", {})
    widgets = tag.widgets or tuple(
        name
        for name in declared
        if name in values and not is_link(values[name]) and _widget_spec(node, name, declared[name])
    )
    if not widgets:
        return [], [f"{where}: the node has no widget inputs to expose"]
    found: list[Param | Output] = []
    errors: list[str] = []
    for widget in widgets:
        if widget not in declared:
            errors.append(f"{where}: the node has no input {widget!r}")
        elif is_link(values.get(widget)):
            errors.append(f"{where}: input {widget!r} is linked to another node, not a widget")
        elif (spec := _widget_spec(node, widget, declared[widget])) is None:
            errors.append(f"{where}: input {widget!r} takes a {declared[widget][0]} link, not a value")
        else:
            found.append(Param(tag.name, node_id, widget, spec, flat=len(widgets) == 1))
    return found, errors


def _declared_inputs(info: Mapping[str, Any]) -> dict[str, list]:
    sections = info.get("input", {})
    return {**sections.get("required", {}), **sections.get("optional", {})}


def _widget_spec(node: Mapping[str, Any], widget: str, declared: list) -> InputSpec | None:
    kind = type_name(declared[0])
    options = declared[1] if len(declared) > 1 and isinstance(declared[1], Mapping) else {}
    value = node.get("inputs", {}).get(widget, options.get("default"))
    if kind == "COMBO" and options.get("image_upload"):
        return InputSpec("MASK" if node["class_type"] == "LoadImageMask" else "IMAGE")
    if kind == "COMBO":
        choices = declared[0] if isinstance(declared[0], list) else options.get("options", [])
        return InputSpec("COMBO", value, choices=tuple(choices))
    if kind == "STRING":
        multiline = bool(options.get("multiline"))
        return InputSpec("STRING", value, multiline=multiline, max_length=MAX_STRING_LENGTH)
    if kind in ("INT", "FLOAT"):
        bounds = (options.get("min"), options.get("max"), options.get("step"))
        return InputSpec(kind, value, *bounds)
    return InputSpec("BOOLEAN", value) if kind == "BOOLEAN" else None


def _duplicates(inputs: list[Param], outputs: list[Output]) -> list[str]:
    named = [("input", p.name, p.node_id) for p in inputs] + [("output", o.name, o.node_id) for o in outputs]
    errors: list[str] = []
    owners: dict[tuple[str, str], str] = {}
    for kind, name, node_id in named:
        first = owners.setdefault((kind, name), node_id)
        if first != node_id:
            errors.append(f"{kind} name {name!r} is used by node {first} and node {node_id}")
            owners[(kind, name)] = node_id
    return errors + _clashes(inputs)


def _clashes(inputs: list[Param]) -> list[str]:
    errors: list[str] = []
    fields: dict[str, Param] = {}
    widgets: dict[tuple[str, str], Param] = {}
    for param in inputs:
        other = fields.setdefault(param.field, param)
        if other is not param and other.name != param.name:
            errors.append(f"input {param.field!r} of node {param.node_id} collides with node {other.node_id}")
        twin = widgets.setdefault((param.node_id, param.widget), param)
        if twin is not param:
            exposed_by = f"[{twin.name}] and [{param.name}]"
            errors.append(f"node {param.node_id}: {param.widget!r} is exposed by {exposed_by}")
    return errors


def bypass_routes(node_id: str, node: Mapping[str, Any], info: Mapping[str, Any]) -> Bypass:
    """How a bypassed node passes its inputs on, by ComfyUI's rule."""
    # ComfyUI's bypass passes the input at the output's own slot index through when its type
    # matches, else the first input of the output's type.
    values = node.get("inputs", {})
    declared = _declared_inputs(info)
    linked = {name: type_name(spec[0]) for name, spec in declared.items() if is_link(values.get(name))}
    order = list(linked)
    output_types = tuple(type_name(kind) for kind in info.get("output", []))
    routes = []
    for slot, kind in enumerate(output_types):
        candidates = order[slot : slot + 1] + order
        routes.append(next((name for name in candidates if types_match(linked[name], kind)), None))
    return Bypass(node_id, str(node["class_type"]), output_types, tuple(routes))


def _bypass_problems(graph: Mapping[str, Any], bypass: list[Bypass]) -> list[str]:
    nodes = {node_id: node for node_id, node in graph.items() if isinstance(node, Mapping)}
    try:
        strip_bypassed(nodes, bypass)
    except WorkflowError as error:
        return error.messages
    return []


def strip_bypassed(graph: Mapping[str, Any], bypass: tuple[Bypass, ...] | list[Bypass]) -> dict[str, Any]:
    """The graph without its bypassed nodes, each consumer linked to what the bypassed node passed on."""
    routes = {item.node_id: item for item in bypass}
    kept = {
        node_id: {**node, "inputs": dict(node.get("inputs", {}))}
        for node_id, node in graph.items()
        if node_id not in routes
    }
    errors: list[str] = []
    for node_id, node in kept.items():
        for name, value in node["inputs"].items():
            if is_link(value) and value[0] in routes:
                try:
                    node["inputs"][name] = _pass_through(graph, routes, value)
                except AnnotationError as error:
                    errors.append(f"{error}, used by node {node_id}.{name}")
    if errors:
        raise WorkflowError(errors)
    return kept


def _pass_through(graph: Mapping[str, Any], routes: Mapping[str, Bypass], link: list) -> list:
    seen: set[str] = set()
    while link[0] in routes:
        if link[0] in seen:
            raise AnnotationError(f"bypassed nodes {', '.join(sorted(seen))} pass their inputs round in a loop")
        seen.add(link[0])
        bypass, slot = routes[link[0]], link[1]
        route = bypass.routes[slot] if slot < len(bypass.routes) else None
        if route is None:
            kind = bypass.output_types[slot] if slot < len(bypass.output_types) else "?"
            raise AnnotationError(
                f"node {bypass.node_id} ({bypass.class_type}) is bypassed but has no {kind} input "
                f"to stand in for its output {slot} ({kind})"
            )
        link = graph[bypass.node_id]["inputs"][route]
    return list(link)


def is_link(value: Any) -> bool:
    """Whether an API-format input value is a `[node_id, slot]` link."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def type_name(declared: Any) -> str:
    """The type an object_info spec declares; a list of choices is a COMBO."""
    return "COMBO" if isinstance(declared, list) else str(declared)


def types_match(received: str, expected: str) -> bool:
    """Whether an output of type `received` may feed an input of type `expected`."""
    # "*" is ComfyUI's any type; "A,B" accepts either A or B.
    return "*" in (received, expected) or bool(set(received.split(",")) & set(expected.split(",")))
