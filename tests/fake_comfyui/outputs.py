"""Output nodes: real PNG files for SaveImage/PreviewImage, the GetImageSize text frame."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from . import behaviours, images

if TYPE_CHECKING:
    from .executor import PromptRun
    from .runtime import Runtime


def node_ui(
    rt: Runtime, run: PromptRun, node_id: str, class_type: str, info: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any] | None:
    """The `output` of `executed` for this node, or None when it reports nothing."""
    if class_type == "GetImageSize" and (text := behaviours.size_text(values)):
        # Binary TEXT goes to every socket, whoever owns the job (ws/g_binary_text_frame.observer).
        rt.hub.emit_binary(images.text_frame(node_id, text), None)
    if not info.get("output_node") or not isinstance(values.get("images"), dict):
        return None
    metadata = {"prompt": run.prompt, **(run.extra.get("extra_pnginfo") or {})}
    if "filename_prefix" in values:
        prefix, folder, kind = str(values["filename_prefix"]), rt.dirs.output, "output"
    else:
        prefix, folder, kind = images.temp_prefix(), rt.dirs.temp, "temp"
    files = save_images(folder, prefix, values["images"], metadata, kind, exact=rt.knobs.exact_png)
    return {"images": files}


def save_images(
    base: str, prefix: str, image: dict[str, Any], metadata: dict[str, Any], kind: str, *, exact: bool = True
) -> list[dict[str, Any]]:
    """`<prefix>_<5-digit counter>_.png`, counter continuing over existing files (README §4)."""
    folder, name, subfolder = _save_path(base, prefix, image)
    counter = _next_counter(folder, name)
    files = []
    for batch_number in range(image["batch"]):
        filename = f"{name.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        size = (image["width"], image["height"])
        level = 4 if kind == "output" else 1
        images.write_png(os.path.join(folder, filename), size, image["color"], metadata, level, exact=exact)
        files.append({"filename": filename, "subfolder": subfolder, "type": kind})
        counter += 1
    _counters[(folder, name)] = (os.stat(folder).st_mtime_ns, counter)
    return files


def _save_path(base: str, prefix: str, image: dict[str, Any]) -> tuple[str, str, str]:
    prefix = prefix.replace("%width%", str(image["width"])).replace("%height%", str(image["height"]))
    normalized = os.path.normpath(prefix)
    subfolder, name = os.path.dirname(normalized), os.path.basename(normalized)
    folder = os.path.abspath(os.path.join(base, subfolder))
    common = os.path.commonpath((base, folder))
    if common != base:
        # Verbatim shape of ws/c2_runtime_error_saveimage's exception_message.
        raise behaviours.NodeError(
            "Exception",
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {base}\n         commonpath: {common}",
        )
    os.makedirs(folder, exist_ok=True)
    return folder, name, subfolder


# (folder, prefix) -> (the folder's mtime after this process last saved there, the next counter). ComfyUI lists
# the folder for every save; with thousands of files that was the fake's largest cost after the PNG itself.
_counters: dict[tuple[str, str], tuple[int, int]] = {}


def _next_counter(folder: str, name: str) -> int:
    mtime, counter = _counters.get((folder, name), (None, 0))
    if mtime == os.stat(folder).st_mtime_ns:
        return counter  # nothing was added or removed since our last save: the listing would give the same
    pattern = re.compile(re.escape(name) + r"_(\d+)_")
    counters = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
    return max(counters, default=0) + 1
