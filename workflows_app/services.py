"""Workflows and endpoints: import, publish, and at run time a caller's inputs become the prompt graph."""

from __future__ import annotations

import functools
from typing import Any

from django.db import transaction
from django.db.models import Max

from comfyrouter.prepared import Prepared
from workflows_app.importer import api_graph_problems, detect_format, ui_to_api
from workflows_app.models import Endpoint, Workflow, WorkflowVersion
from workflows_app.objectinfo import object_info
from workflows_app.params import EndpointParams, WorkflowError, collect_params
from workflows_app.render import (
    SEED_WIDGETS,
    InputError,
    cache_subgraph,
    randomize_seeds,
    render,
    validate_inputs,
)

# Read for every prompt a node is sent (compiled once: comfyrouter.prepared). Unordered: the model's ORDER BY slug
# cost this read a third more, and cache_graphs sorts.
ENABLED_VERSIONS = Prepared(lambda: Endpoint.objects.enabled().order_by().values_list("version_id", flat=True))


@functools.lru_cache(maxsize=512)
def version_graph(version_id: int) -> dict[str, Any]:
    """A workflow version's API graph, parsed once (versions never change). Shared: read it, never change it."""
    return WorkflowVersion.objects.values_list("graph", flat=True).get(id=version_id)


@functools.lru_cache(maxsize=512)
def version_params(version_id: int) -> EndpointParams:
    """The inputs, outputs and flags of a workflow version (versions never change, so cache them)."""
    return collect_params(version_graph(version_id), object_info())


def cache_graphs() -> list[dict[str, Any]]:
    """The `[!cache]` subgraphs of every enabled endpoint: added to each prompt to keep them warm."""
    versions = sorted(set(ENABLED_VERSIONS.all()))
    return _cache_graphs(tuple(versions))


@functools.lru_cache(maxsize=64)
def _cache_graphs(version_ids: tuple[int, ...]) -> list[dict[str, Any]]:
    subgraphs = [
        cache_subgraph(version_graph(v), version_params(v)) for v in version_ids if version_params(v).cache
    ]
    return [subgraph for subgraph in subgraphs if subgraph]


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
    return render(version_graph(endpoint.version_id), params, values)


PUBLISHED_FIELDS = frozenset({"title", "description", "enabled", "defaults", "output_mode", "max_wait"})


def workflow_import(*, name: str, graph: Any, user: Any = None, description: str = "") -> WorkflowVersion:
    """A new version of workflow `name` (made if new) from an API- or UI-format graph; raises WorkflowError."""
    info = object_info()
    kind = detect_format(graph)
    api_graph, errors = ui_to_api(graph, info) if kind == "ui" else (dict(graph), [])
    errors += api_graph_problems(api_graph, info)
    try:
        collect_params(api_graph, info)
    except WorkflowError as exc:
        errors += exc.messages
    if errors:
        raise WorkflowError(errors)
    owner = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        workflow, _ = Workflow.objects.select_for_update().get_or_create(
            name=name, defaults={"created_by": owner, "description": description}
        )
        number = (workflow.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = WorkflowVersion.objects.create(
            workflow=workflow, number=number, graph=api_graph, source_format=kind, source=graph, created_by=owner
        )
        workflow.save(update_fields=["updated_at"])
    return version


def endpoint_publish(*, slug: str, workflow: Workflow, user: Any = None, **fields: Any) -> Endpoint:
    """Point endpoint `slug` (made if new) at the workflow's latest version; republishing moves it."""
    version = workflow.latest_version
    if version is None:
        raise WorkflowError([f"workflow {workflow.name!r} has no version to publish"])
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().filter(slug=slug).first()
        endpoint = endpoint or Endpoint(slug=slug, title=workflow.name, description=workflow.description)
        endpoint.version = version
        return _endpoint_save(endpoint, fields)


def endpoint_update(*, endpoint: Endpoint, **fields: Any) -> Endpoint:
    """Change an endpoint's title, description, defaults, output mode, wait or enabled flag."""
    with transaction.atomic():
        return _endpoint_save(Endpoint.objects.select_for_update().get(id=endpoint.id), fields)


def endpoint_unpublish(*, endpoint: Endpoint) -> None:
    """Remove an endpoint; its workflow, versions and past jobs stay."""
    endpoint.delete()


def _endpoint_save(endpoint: Endpoint, fields: dict[str, Any]) -> Endpoint:
    for name, value in fields.items():
        if name in PUBLISHED_FIELDS:
            setattr(endpoint, name, value)
    problems = defaults_problems(version_params(endpoint.version_id), endpoint.defaults or {})
    if problems:
        raise WorkflowError(problems)
    endpoint.save()
    return endpoint


def defaults_problems(params: EndpointParams, defaults: Any) -> list[str]:
    """Why an endpoint's defaults (`{field: value}`, as `Param.field` names them) do not fit its inputs."""
    if not isinstance(defaults, dict):
        return ["defaults: must be an object of {input: value}"]
    fields = params.by_field
    problems = [f"defaults.{field}: is not an input of this endpoint" for field in defaults if field not in fields]
    body: dict[str, Any] = {}
    for field, value in defaults.items():
        if field in fields:
            param = fields[field]
            body[param.name] = value if param.flat else {**body.get(param.name, {}), param.widget: value}
    try:
        validate_inputs(params, body)
    except InputError as exc:
        bad = [p for p in exc.problems if p["rule"] != "is required"]
        problems += [f"defaults.{p['field']}: {p['value']!r} {p['rule']}" for p in bad]
    return problems
