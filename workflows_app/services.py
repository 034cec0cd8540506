"""Endpoints at run time: a caller's inputs become the prompt graph a node runs."""

from __future__ import annotations

import functools
from typing import Any

from workflows_app.models import Endpoint, WorkflowVersion
from workflows_app.objectinfo import object_info
from workflows_app.params import EndpointParams, collect_params
from workflows_app.render import SEED_WIDGETS, randomize_seeds, render, validate_inputs


@functools.lru_cache(maxsize=512)
def version_params(version_id: int) -> EndpointParams:
    """The inputs, outputs and flags of a workflow version (versions never change, so cache them)."""
    graph = WorkflowVersion.objects.values_list("graph", flat=True).get(id=version_id)
    return collect_params(graph, object_info())


def endpoint_values(*, endpoint: Endpoint, inputs: Any) -> tuple[EndpointParams, dict[str, Any]]:
    """Validate a caller's inputs and complete them; raises InputError listing every bad value."""
    params = version_params(endpoint.version_id)
    values = validate_inputs(params, inputs)
    seeds = {p.field for p in params.inputs if p.widget in SEED_WIDGETS}
    # Omitted inputs take the operator's defaults, except seeds: an omitted seed is random,
    # or ComfyUI would answer the same request from its cache with the same image.
    for field, value in (endpoint.defaults or {}).items():
        if field in params.by_field and field not in seeds:
            values.setdefault(field, value)
    return params, randomize_seeds(params, values)


def endpoint_render(*, endpoint: Endpoint, params: EndpointParams, values: dict[str, Any]) -> dict[str, Any]:
    """The prompt graph for these values (file inputs already replaced by their names on the nodes)."""
    return render(endpoint.version.graph, params, values)
