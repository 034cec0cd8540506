"""Check an API-format graph against a ComfyUI `/object_info` before any node sees it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any

from workflows_app.params import is_link, type_name, types_match

Graph = Mapping[str, Any]
ObjectInfo = Mapping[str, Any]

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


def check_graph_against_object_info(
    graph: Graph, object_info: ObjectInfo, *, skip_choices: Collection[str] = ()
) -> list[str]:
    """Every problem of the graph, each naming its node; empty when ComfyUI would accept it.

    `skip_choices` names COMBO inputs whose values are not checked against the recorded
    choices (model files, which depend on the fleet a graph runs on); a COMBO whose choices
    are empty (left open, as `objectinfo.object_info` does for model files) is not checked either.
    """
    problems: list[str] = []
    for node_id, node in graph.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("inputs", {}), Mapping):
            problems.append(f"node {node_id}: not a {{class_type, inputs}} object")
            continue
        spec = object_info.get(_class_of(node))
        if spec is None:
            problems.append(_unknown_class(node_id, node))
            continue
        problems += _check_node(node_id, node, spec, graph, object_info, skip_choices)
    if cycle := find_cycle(graph):
        problems.append(f"the links form a cycle through nodes {', '.join(map(str, cycle))}")
    return problems


def _unknown_class(node_id: str, node: Mapping) -> str:
    if "class_type" not in node:
        return f"node {node_id}: has no class_type"
    return f"node {node_id}: unknown class {node.get('class_type')!r}"


def find_cycle(graph: Graph) -> list[str]:
    """Node ids along one cycle of the graph's links, or [] when it has none."""
    sources = {
        node_id: {value[0] for value in _inputs(node).values() if is_link(value)}
        for node_id, node in graph.items()
    }
    try:
        TopologicalSorter(sources).prepare()
    except CycleError as error:
        return list(error.args[1])
    return []


def _check_node(
    node_id: str, node: Mapping, spec: Mapping, graph: Graph, object_info: ObjectInfo, skip: Collection[str]
) -> list[str]:
    where = f"node {node_id} ({node['class_type']})"
    required = spec["input"].get("required", {})
    declared = {**required, **spec["input"].get("optional", {})}
    inputs = _inputs(node)
    problems = [f"{where}: missing required input {name!r}" for name in required if name not in inputs]
    for name, value in inputs.items():
        if name not in declared:
            problems.append(f"{where}: unknown input {name!r}")
            continue
        if isinstance(value, list):
            problem = _check_link(value, declared[name], graph, object_info)
        else:
            problem = _check_value(value, declared[name], check_choices=name not in skip)
        if problem:
            problems.append(f"{where}.{name}: {problem}")
    return problems


def _check_link(link: list, input_spec: list, graph: Graph, object_info: ObjectInfo) -> str | None:
    if not is_link(link):
        return f"bad link {link!r}, want [node_id, slot]"
    source_id, slot = link
    if source_id not in graph:
        return f"links to missing node {source_id!r}"
    source_spec = object_info.get(_class_of(graph[source_id]))
    if source_spec is None:
        return None  # the unknown class is reported on its own node
    outputs = source_spec["output"]
    if not 0 <= slot < len(outputs):
        return f"links to slot {slot} of node {source_id}, which has {len(outputs)} outputs"
    received, expected = type_name(outputs[slot]), type_name(input_spec[0])
    if not types_match(received, expected):
        return f"gets {received} from node {source_id} slot {slot} but takes {expected}"
    return None


def _check_value(value: Any, input_spec: list, *, check_choices: bool) -> str | None:
    kind = type_name(input_spec[0])
    options = input_spec[1] if len(input_spec) > 1 and isinstance(input_spec[1], Mapping) else {}
    if kind in ("INT", "FLOAT"):
        return _check_number(value, kind, options)
    if kind == "COMBO":
        choices = input_spec[0] if isinstance(input_spec[0], list) else options.get("options", [])
        if not check_choices or not choices or value in choices:
            return None
        return f"{value!r} is not one of {choices}"
    if kind == "STRING" and not isinstance(value, str):
        return f"{value!r} is not of type STRING"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{value!r} is not of type BOOLEAN"
    if kind not in WIDGET_TYPES and kind != "*":
        return f"takes a link to a {kind}, got the value {value!r}"
    return None


def _check_number(value: Any, kind: str, options: Mapping) -> str | None:
    wanted = int if kind == "INT" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        return f"{value!r} is not of type {kind}"
    if "min" in options and value < options["min"]:
        return f"{value} is below the minimum {options['min']}"
    if "max" in options and value > options["max"]:
        return f"{value} is above the maximum {options['max']}"
    return None


def _inputs(node: Any) -> Mapping:
    inputs = node.get("inputs", {}) if isinstance(node, Mapping) else {}
    return inputs if isinstance(inputs, Mapping) else {}


def _class_of(node: Any) -> Any:
    class_type = node.get("class_type") if isinstance(node, Mapping) else None
    return class_type if isinstance(class_type, str) else None
