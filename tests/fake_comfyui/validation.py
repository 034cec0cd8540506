"""POST /prompt validation, mirroring ComfyUI's validate_prompt / validate_inputs.

Every error shape and message here is copied from http/post_prompt_validation_errors.json.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

ClassInfo = Callable[[str], "dict[str, Any] | None"]
FileExists = Callable[[str], bool]

# Nodes with a VALIDATE_INPUTS hook: ComfyUI skips the combo check for these inputs and runs the
# hook instead (LoadImage: "Invalid image file", http/post_prompt_validation_errors.json).
CUSTOM_VALIDATED = {"LoadImage": "image", "LoadImageMask": "image"}

# The traceback of a link to a missing node, verbatim from the recording.
MISSING_NODE_TRACEBACK = [
    '  File "/opt/ComfyUI/execution.py", line 1010, in validate_prompt\n'
    "    m = await validate_inputs(prompt_id, prompt, o, validated)\n"
    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    '  File "/opt/ComfyUI/execution.py", line 788, in validate_inputs\n'
    "    o_class_type = prompt[o_id]['class_type']\n"
    "                   ~~~~~~^^^^^^\n",
]


def _error(type_: str, message: str, details: str, extra_info: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def no_prompt_error() -> dict[str, Any]:
    return _error("no_prompt", "No prompt provided", "No prompt provided")


class Validator:
    """Validates one API-format graph against the fake's object_info."""

    def __init__(self, prompt: dict[str, Any], class_info: ClassInfo, file_exists: FileExists) -> None:
        self.prompt = prompt
        self.class_info = class_info
        self.file_exists = file_exists
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def run(self, targets: list[str] | None) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """Return (ok, error, good_outputs, node_errors) like ComfyUI's validate_prompt."""
        outputs: list[str] = []
        for node_id, node in self.prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                message = "Cannot execute because a node is missing the class_type property."
                return False, _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            info = self.class_info(node["class_type"])
            if info is None:
                message = f"Cannot execute because node {node['class_type']} does not exist."
                return False, _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            if info.get("output_node") and (targets is None or node_id in targets):
                outputs.append(node_id)
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
        return self._validate_outputs(outputs)

    def _validate_outputs(self, outputs: list[str]) -> tuple[bool, Any, list[str], dict[str, Any]]:
        good: list[str] = []
        failed: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        for output_id in outputs:
            try:
                valid, reasons = self.validate_node(output_id)
            except Exception as ex:  # ComfyUI turns any validator crash into exception_during_validation
                valid, reasons = False, [self._exception_reason(ex)]
                self.validated[output_id] = (False, reasons)
            if valid:
                good.append(output_id)
                continue
            if reasons:
                failed.append((output_id, reasons))
            # ComfyUI appends this output to every failed node validated so far, dependent or not.
            for node_id, (node_valid, node_reasons) in self.validated.items():
                if not node_valid and node_reasons:
                    entry = node_errors.setdefault(
                        node_id,
                        {
                            "errors": node_reasons,
                            "dependent_outputs": [],
                            "class_type": self.prompt[node_id]["class_type"],
                        },
                    )
                    entry["dependent_outputs"].append(output_id)
        if good:
            return True, None, good, node_errors
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failed for r in reasons)
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return False, error, [], node_errors

    @staticmethod
    def _exception_reason(ex: Exception) -> dict[str, Any]:
        extra = {"exception_type": type(ex).__name__, "traceback": list(MISSING_NODE_TRACEBACK)}
        return _error("exception_during_validation", "Exception when validating node", str(ex), extra)

    def validate_node(self, node_id: str) -> tuple[bool, list[dict[str, Any]]]:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        info = self.class_info(node["class_type"]) or {}
        inputs = node.setdefault("inputs", {})
        # Missing inputs first, then the present ones (multi-error case of the validation file).
        errors = [
            _error("required_input_missing", "Required input is missing", name, {"input_name": name})
            for name in info["input"].get("required", {})
            if name not in inputs
        ]
        valid = self._check_inputs(node, info, errors)
        custom = self._custom_error(node)
        if custom:
            errors.append(custom)
        result = (not errors and valid, errors)
        self.validated[node_id] = result
        return result

    def _check_inputs(self, node: dict[str, Any], info: dict[str, Any], errors: list[dict[str, Any]]) -> bool:
        """Append per-input errors; False when a linked node failed validation."""
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        valid = True
        for name, spec in specs.items():
            if name not in node["inputs"]:
                continue
            config = [spec[0], spec[1] if len(spec) > 1 else {}]
            value = node["inputs"][name]
            if isinstance(value, list):
                error, linked_ok = self._check_link(name, value, config)
                valid = valid and linked_ok
            else:
                error = self._check_value(node, name, value, config)
            if error:
                errors.append(error)
        return valid

    def _custom_error(self, node: dict[str, Any]) -> dict[str, Any] | None:
        name = CUSTOM_VALIDATED.get(node["class_type"])
        value = node["inputs"].get(name) if name else None
        if value is None or isinstance(value, list) or self.file_exists(str(value)):
            return None
        details = f"{name} - Invalid image file: {value}"
        return _error(
            "custom_validation_failed", "Custom validation failed for node", details, {"input_name": name}
        )

    def _check_link(self, name: str, value: list[Any], config: list[Any]) -> tuple[dict[str, Any] | None, bool]:
        if len(value) != 2:
            extra = {"input_name": name, "input_config": config, "received_value": value}
            message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
            return _error("bad_linked_input", message, name, extra), True
        source_id = value[0]
        source = self.prompt[source_id]  # KeyError -> exception_during_validation, like ComfyUI
        source_info = self.class_info(source["class_type"]) or {"output": []}
        received = source_info["output"][value[1]]
        if not types_match(received, config[0]):
            details = f"{name}, received_type({received}) mismatch input_type({config[0]})"
            extra = {
                "input_name": name,
                "input_config": config,
                "received_type": received,
                "linked_node": value,
            }
            return _error(
                "return_type_mismatch", "Return type mismatch between linked nodes", details, extra
            ), True
        linked_valid, _ = self.validate_node(str(source_id))
        return None, linked_valid

    def _check_value(
        self, node: dict[str, Any], name: str, value: Any, config: list[Any]
    ) -> dict[str, Any] | None:
        input_type, options = config
        try:
            value = convert(input_type, value)
        except (TypeError, ValueError) as ex:
            details = f"{name}, {value}, {ex}"
            extra = {
                "input_name": name,
                "input_config": config,
                "received_value": value,
                "exception_message": str(ex),
            }
            return _error(
                "invalid_input_type",
                f"Failed to convert an input value to a {input_type} value",
                details,
                extra,
            )
        node["inputs"][name] = value
        if CUSTOM_VALIDATED.get(node["class_type"]) == name:
            return None
        return _range_or_choice_error(name, value, config)


def _range_or_choice_error(name: str, value: Any, config: list[Any]) -> dict[str, Any] | None:
    input_type, options = config
    extra = {"input_name": name, "input_config": config, "received_value": value}
    if "min" in options and value < options["min"]:
        return _error("value_smaller_than_min", f"Value {value} smaller than min of {options['min']}", name, extra)
    if "max" in options and value > options["max"]:
        return _error("value_bigger_than_max", f"Value {value} bigger than max of {options['max']}", name, extra)
    choices = options.get("options", []) if input_type == "COMBO" else input_type
    is_combo = isinstance(input_type, list) or input_type == "COMBO"
    if is_combo and isinstance(choices, list) and value not in choices:
        # ComfyUI hides lists longer than 20 entries.
        listing = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
        if len(choices) > 20:
            extra["input_config"] = None
        return _error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listing}", extra)
    return None


def convert(input_type: Any, value: Any) -> Any:
    if input_type == "INT":
        return int(value)
    if input_type == "FLOAT":
        return float(value)
    if input_type == "STRING":
        return str(value)
    if input_type == "BOOLEAN":
        return bool(value)
    return value


def types_match(received: Any, expected: Any) -> bool:
    if not isinstance(received, str) or not isinstance(expected, str):
        return True
    if received == expected or "*" in (received, expected):
        return True
    return set(received.split(",")).issubset(set(expected.split(",")))


def annotated_path(name: str, dirs: dict[str, str]) -> tuple[str, str | None]:
    """Split 'file.png [output]' into ('file.png', output dir), like folder_paths.annotated_filepath."""
    for kind in ("output", "input", "temp"):
        if name.endswith(f"[{kind}]"):
            return name[: -len(kind) - 3], dirs[kind]
    return name, None


def annotated_exists(name: str, dirs: dict[str, str]) -> bool:
    filename, directory = annotated_path(name, dirs)
    return os.path.isfile(os.path.join(directory or dirs["input"], filename))
