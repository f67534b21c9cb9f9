"""The cloud package's public face, and its one rule about imports."""

from __future__ import annotations

import ast
from pathlib import Path

import cloud

CLOUD_DIR = Path(cloud.__file__).resolve().parent


def test_the_public_names_exist() -> None:
    assert sorted(cloud.__all__) == ["CloudConfig", "CloudError", "CloudServer", "load_config", "serve"]
    for name in cloud.__all__:
        assert getattr(cloud, name) is not None


def test_cloud_never_imports_the_edge_or_the_simulator() -> None:
    offenders = []
    for path in sorted(CLOUD_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in modules if m.split(".")[0] in {"edge", "hw_sim"}]
    assert offenders == []
