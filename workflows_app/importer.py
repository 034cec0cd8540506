"""A workflow as an operator hands it over → the API-format graph an endpoint runs; pure, no Django.

Two formats arrive: ComfyUI's API format (`{"3": {"class_type", "inputs", "_meta"}}`) and the
editor's `workflow.json` (UI format: `nodes`, `links`, `widgets_values`). The UI format is
converted as the frontend's `graphToPrompt` does, with the fleet's object_info telling which
inputs are widgets and in what order their values were saved:

- widget values follow `input_order` (else the declared order), required then optional; a widget
  with `control_after_generate` (seeds) is followed by its control value ("randomize", ...), and a
  class with `image_upload` saves its upload button's value after its required widgets;
- an input fed by a link wins over the widget value it converts (`"widget": {"name": ...}`);
- `Reroute` nodes are followed, a `PrimitiveNode`'s value is written into its targets, `Note` and
  `MarkdownNote` are dropped, muted nodes (mode 2) are dropped with their links;
- bypassed nodes (mode 4) are removed and their consumers rewired by `params.strip_bypassed`,
  the same rule `[!bypass]` uses;
- a node's title (or its class's display name) becomes `_meta.title`, so annotations carry over.

Every problem is collected, converted or not, then the graph is checked (`api_graph_problems`),
so one `WorkflowError` lists all that is wrong at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflows_app.checks import check_graph_against_object_info
from workflows_app.params import WorkflowError, bypass_routes, strip_bypassed

MUTED, BYPASSED = 2, 4
IGNORED = frozenset({"Note", "MarkdownNote"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "file_upload")
CONTROL, UPLOAD = "control_after_generate", "upload"


def detect_format(data: Any) -> str:
    """ "ui" for an editor `workflow.json`, "api" for an API-format graph; `WorkflowError` otherwise."""
    if isinstance(data, Mapping) and isinstance(data.get("nodes"), list):
        return "ui"
    nodes = list(data.values()) if isinstance(data, Mapping) else []
    if nodes and all(isinstance(node, Mapping) for node in nodes) and any("class_type" in node for node in nodes):
        return "api"
    raise WorkflowError(
        [
            "not a ComfyUI workflow: expected the API format ({node_id: {class_type, inputs}}) "
            "or the editor's workflow.json (with nodes and links)"
        ]
    )


def import_graph(data: Any, object_info: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(format, API-format graph) of a workflow in either format; `WorkflowError` lists every problem."""
    kind = detect_format(data)
    graph, errors = ui_to_api(data, object_info) if kind == "ui" else (dict(data), [])
    errors += api_graph_problems(graph, object_info)
    if errors:
        raise WorkflowError(errors)
    return kind, graph


def api_graph_problems(graph: Any, object_info: Mapping[str, Any]) -> list[str]:
    """What ComfyUI would reject in an API-format graph: unknown classes, bad links, missing inputs, cycles."""
    if not isinstance(graph, Mapping) or not graph:
        return ["the graph has no nodes"]
    return check_graph_against_object_info(graph, object_info)


def ui_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The API-format graph of an editor workflow, and the problems met converting it."""
    nodes, errors = _nodes(workflow)
    links = _links(workflow.get("links") or [])
    definitions = workflow.get("definitions")
    listed = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    subgraphs = {str(item.get("id")) for item in listed or [] if isinstance(item, Mapping)}
    graph: dict[str, Any] = {}
    for node_id, node in nodes.items():
        kind = str(node.get("type"))
        if kind in IGNORED or kind in ("Reroute", "PrimitiveNode") or node.get("mode") == MUTED:
            continue
        if kind in subgraphs:
            errors.append(f"node {node_id}: subgraphs are not supported; unpack it into plain nodes first")
            continue
        info = object_info.get(kind)
        values, problems = _widget_values(node_id, node, info) if info else ({}, [])
        linked, link_problems = _linked_inputs(node_id, node, nodes, links)
        errors += problems + link_problems
        title = node.get("title") or (info or {}).get("display_name") or kind
        graph[node_id] = {"inputs": {**values, **linked}, "class_type": kind, "_meta": {"title": title}}
    return _strip_bypassed(graph, nodes, object_info, errors)


def _nodes(workflow: Mapping[str, Any]) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    nodes: dict[str, Mapping[str, Any]] = {}
    errors: list[str] = []
    for index, node in enumerate(workflow["nodes"]):
        if not isinstance(node, Mapping) or not _is_id(node.get("id")) or not isinstance(node.get("type"), str):
            errors.append(f"nodes[{index}]: not a node with an id and a type")
        elif problem := _node_shape(node):
            errors.append(f"node {node['id']}: {problem}")
        elif str(node["id"]) in nodes:
            errors.append(f"node {node['id']}: the id is used twice")
        else:
            nodes[str(node["id"])] = node
    return nodes, errors


def _node_shape(node: Mapping[str, Any]) -> str | None:
    inputs = node.get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(slot, Mapping) for slot in inputs):
        return "inputs must be a list of {name, type, link} objects"
    for slot in inputs:
        if not (slot.get("link") is None or _is_id(slot["link"])) or not isinstance(
            slot.get("widget") or {}, Mapping
        ):
            return f"input {slot.get('name')!r} has a malformed link or widget"
    if not isinstance(node.get("widgets_values"), list | Mapping | None):
        return "widgets_values must be a list or an object"
    return None


def _links(raw: Any) -> dict[Any, tuple[str, int]]:
    """Link id → (origin node id, origin slot); both the array and the object serialisations."""
    links: dict[Any, tuple[str, int]] = {}
    for link in raw if isinstance(raw, list) else []:
        if isinstance(link, list) and len(link) >= 3:
            link_id, origin, slot = link[:3]
        elif isinstance(link, Mapping):
            link_id, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot", 0)
        else:
            continue
        # A malformed link stays out: the inputs using it are then reported as using a missing link.
        if (
            _is_id(link_id)
            and _is_id(origin)
            and isinstance(slot, int)
            and not isinstance(slot, bool)
            and slot >= 0
        ):
            links[link_id] = (str(origin), slot)
    return links


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def widget_slots(info: Mapping[str, Any]) -> list[str]:
    """The names behind a node's `widgets_values`, in order, with its control and upload slots."""
    slots: list[str] = []
    order = info.get("input_order") or {}
    for section in ("required", "optional"):
        specs = info.get("input", {}).get(section, {})
        for name in order.get(section) or list(specs):
            spec = specs.get(name)
            if spec is None or not _is_widget(spec):
                continue
            slots.append(name)
            slots += [CONTROL] if _options(spec).get("control_after_generate") else []
        uploads = any(_options(spec).get(key) for spec in specs.values() for key in UPLOAD_OPTIONS)
        slots += [UPLOAD] if section == "required" and uploads else []
    return slots


Nodes = Mapping[str, Mapping[str, Any]]
Links = Mapping[Any, tuple[str, int]]


def _widget_values(node_id: str, node: Mapping[str, Any], info: Mapping[str, Any]) -> tuple[dict, list[str]]:
    saved = node.get("widgets_values")
    if saved is None:
        saved = []
    if isinstance(saved, Mapping):
        names = [slot for slot in widget_slots(info) if slot not in (CONTROL, UPLOAD)]
        return {name: saved[name] for name in names if name in saved}, []
    slots = widget_slots(info)
    # Exports made without the control or upload widgets (older frontends, hand edits) are read too.
    for candidate in (slots, [s for s in slots if s != UPLOAD], [s for s in slots if s != CONTROL]):
        if len(candidate) == len(saved):
            values = dict(zip(candidate, saved, strict=True))
            return {name: value for name, value in values.items() if name not in (CONTROL, UPLOAD)}, []
    wanted = ", ".join(slots) or "none"
    return {}, [
        f"node {node_id} ({node['type']}): {len(saved)} widget values, but the class has "
        f"{len(slots)} widget slots ({wanted})"
    ]


def _linked_inputs(
    node_id: str, node: Mapping[str, Any], nodes: Nodes, links: Links
) -> tuple[dict[str, Any], list[str]]:
    inputs: dict[str, Any] = {}
    errors: list[str] = []
    for slot in node.get("inputs") or []:
        if not isinstance(slot, Mapping) or slot.get("link") is None:
            continue
        name = str((slot.get("widget") or {}).get("name") or slot.get("name"))
        try:
            found = _origin(slot["link"], nodes, links)
        except ValueError as error:
            errors.append(f"node {node_id} ({node['type']}) input {name!r}: {error}")
            continue
        if found is not _NOTHING:
            inputs[name] = found
    return inputs, errors


_NOTHING = object()


def _origin(link_id: Any, nodes: Nodes, links: Links) -> Any:
    """What feeds a link: `[node_id, slot]`, a primitive's value, or `_NOTHING` (a muted source)."""
    seen: set[str] = set()
    while True:
        if link_id not in links:
            raise ValueError(f"uses link {link_id}, which is not in the workflow's links")
        source_id, slot = links[link_id]
        source = nodes.get(source_id)
        if source is None:
            raise ValueError(f"link {link_id} comes from missing node {source_id}")
        if source.get("mode") == MUTED:
            return _NOTHING
        if source["type"] == "PrimitiveNode":
            values = source.get("widgets_values") or []
            if not isinstance(values, list) or not values:
                raise ValueError(f"primitive node {source_id} has no value")
            return values[0]
        if source["type"] in IGNORED:
            raise ValueError(f"link {link_id} comes from note {source_id}")
        if source["type"] != "Reroute":
            return [source_id, slot]
        if source_id in seen:
            raise ValueError(f"reroutes loop through node {source_id}")
        seen.add(source_id)
        upstream = [item.get("link") for item in source.get("inputs") or [] if isinstance(item, Mapping)]
        if not upstream or upstream[0] is None:
            raise ValueError(f"reroute {source_id} is not connected to anything")
        link_id = upstream[0]


def _strip_bypassed(
    graph: dict[str, Any], nodes: Nodes, object_info: Mapping[str, Any], errors: list[str]
) -> tuple[dict[str, Any], list[str]]:
    bypass = [
        bypass_routes(node_id, graph[node_id], object_info[graph[node_id]["class_type"]])
        for node_id, node in nodes.items()
        if node.get("mode") == BYPASSED and node_id in graph and graph[node_id]["class_type"] in object_info
    ]
    try:
        return strip_bypassed(graph, bypass), errors
    except WorkflowError as error:
        return graph, errors + error.messages


def _is_widget(spec: Any) -> bool:
    if not isinstance(spec, list | tuple) or not spec:
        return False
    if _options(spec).get("forceInput"):
        return False
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def _options(spec: Any) -> Mapping[str, Any]:
    return spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], Mapping) else {}
