"""Every environment variable the settings read is documented in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def variables_read_by_settings() -> set[str]:
    source = (ROOT / "comfyrouter" / "settings.py").read_text()
    return set(re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z0-9_]+)"', source))


def variables_in_readme_table() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\|\s*`([A-Z0-9_]+)`\s*\|", readme, flags=re.MULTILINE))


def test_every_setting_variable_is_in_the_readme_table():
    read = variables_read_by_settings()
    assert len(read) > 10
    assert read - variables_in_readme_table() == set()


def test_the_readme_documents_no_variable_the_settings_do_not_read():
    assert variables_in_readme_table() - variables_read_by_settings() == set()
