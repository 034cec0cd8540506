"""Execution order of a prompt, as ComfyUI's ExecutionList computes it."""

from __future__ import annotations

from typing import Any


def execution_order(prompt: dict[str, Any], outputs: list[str], cached: set[str], is_output: Any) -> list[str]:
    """ComfyUI's ExecutionList order: stack-built pending set, ux_friendly_pick_node (ws/m_ksampler_cold)."""
    pending: dict[str, None] = {}
    blocking: dict[str, dict[str, None]] = {}
    block_count: dict[str, int] = {}
    for output_id in outputs:
        _add_node(prompt, output_id, cached, pending, blocking, block_count)
    order: list[str] = []
    while pending:
        ready = [n for n in pending if block_count[n] == 0]
        if not ready:
            break
        chosen = _pick(ready, blocking, is_output)
        order.append(chosen)
        del pending[chosen]
        for blocked in blocking[chosen]:
            block_count[blocked] -= 1
    return order


def _add_node(
    prompt: dict[str, Any],
    start: str,
    cached: set[str],
    pending: dict[str, None],
    blocking: dict[str, dict[str, None]],
    block_count: dict[str, int],
) -> None:
    stack, links = [start], []
    while stack:
        node_id = stack.pop()
        if node_id in pending:
            continue
        pending[node_id] = None
        block_count.setdefault(node_id, 0)
        blocking.setdefault(node_id, {})
        for value in prompt[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2:
                source = str(value[0])
                if source not in cached:
                    stack.append(source)
                    links.append((source, node_id))
    for source, target in links:
        if target not in blocking[source]:
            blocking[source][target] = None
            block_count[target] += 1


def _pick(ready: list[str], blocking: dict[str, dict[str, None]], is_output: Any) -> str:
    for node_id in ready:
        if is_output(node_id):
            return node_id
    for node_id in ready:
        if any(is_output(b) for b in blocking[node_id]):
            return node_id
    for node_id in ready:
        if any(is_output(b2) for b in blocking[node_id] for b2 in blocking.get(b, {})):
            return node_id
    return ready[0]
