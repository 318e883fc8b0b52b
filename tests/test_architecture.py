"""Import boundaries from docs/architecture.md, enforced instead of remembered."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "swapd"
STDLIB = sys.stdlib_module_names

# package -> swapd packages it may import (besides itself), and third-party roots it may use.
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    "core": (set(), set()),
    "config": ({"core", "errors"}, {"yaml", "jsonschema"}),
    "process": ({"core", "config", "errors"}, {"aiohttp", "psutil"}),
    "gpu": ({"core", "config", "errors"}, {"pynvml", "psutil"}),
    "web": ({"core", "config", "obs", "errors"}, {"aiohttp", "httptools"}),
    "router": ({"core", "config", "process", "gpu", "obs", "errors"}, set()),
    "obs": ({"core", "config", "errors"}, {"prometheus_client"}),
}
FORBIDDEN_IN_CORE = {"asyncio", "time", "subprocess", "threading", "socket"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_architecture_package_imports_respect_boundaries(package: str) -> None:
    swapd_ok, third_party_ok = ALLOWED[package]
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if root == "swapd":
                parts = name.split(".")
                target = parts[1] if len(parts) > 1 else ""
                assert target in swapd_ok | {package, "__init__"} or (
                    target == "" and package not in ("core",)
                ), f"{path.relative_to(ROOT)} imports {name}"
            elif root == "__future__":
                continue
            else:
                assert root in STDLIB or root in third_party_ok, (
                    f"{path.relative_to(ROOT)} imports {name}"
                )
                if package == "core":
                    assert root not in FORBIDDEN_IN_CORE, (
                        f"core must stay pure: {path} imports {name}"
                    )


def test_architecture_only_cli_exits_the_process() -> None:
    for path in ROOT.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        text = path.read_text()
        assert "sys.exit(" not in text, path
        assert "os._exit(" not in text, path


def test_architecture_nothing_imports_app_but_cli() -> None:
    for path in ROOT.rglob("*.py"):
        if path.name in ("cli.py", "app.py"):
            continue
        assert "swapd.app" not in _imports(path), path
