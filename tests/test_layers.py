"""The layer rule of docs/architecture.md, checked on every import in src/ (at any depth of a
module's code): commands on top, then runtime/, then the library, then utils/ at the bottom; a
module imports only from its own layer or those below, and runtime/ from utils/ alone."""

from __future__ import annotations

import ast
from pathlib import Path

from workspace import REPO

PACKAGE = REPO / "src" / "mnist_pipeline"
LIBRARY = ("config", "data", "model", "training", "tracking", "report", "serving")
# What each layer may import from the package, itself included.
MAY_IMPORT = {
    "commands": {"commands", "runtime", "library", "utils"},
    "runtime": {"runtime", "utils"},
    "library": {"library", "utils"},
    "utils": {"utils"},
}


def layer(module: str) -> str:
    """`mnist_pipeline.tracking.store` → "library"; the package root's docstring counts as utils."""
    parts = module.split(".")[1:]
    if not parts:
        return "utils"
    if parts[0] in ("runtime", "utils"):
        return parts[0]
    return "library" if parts[0] in LIBRARY else "commands"


def imports(path: Path) -> set[str]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative: from . import x
            base = module.split(".")[: -node.level]
            found.add(".".join([*base, *(node.module or "").split(".")]).rstrip("."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_pipeline"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found.add(node.module if node.module != "mnist_pipeline" else names[0])
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mnist_pipeline")}
    return found


def test_every_import_follows_the_layer_rule() -> None:
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for imported in imports(path):
            if layer(imported) not in MAY_IMPORT[layer(module)]:
                broken.append(f"{module} ({layer(module)}) imports {imported} ({layer(imported)})")
    assert not broken, "\n".join(broken)


def test_the_rule_is_the_one_docs_architecture_draws() -> None:
    text = " ".join((REPO / "docs" / "architecture.md").read_text().split())
    for name in LIBRARY:
        assert f"`{name}" in text, f"docs/architecture.md does not place {name} in the library"
    assert "runtime/ imports utils/ alone" in text
    assert "a module imports only from its own layer or the layers below it" in text
