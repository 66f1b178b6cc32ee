"""The tree shows the flow: imports between rooms run one way (DESIGN.md "Layout").

cli → service/web → engine → connectors → templating/config/store → shared leaves.  Every import
counts, also one inside a function; a lower room never reaches up, connectors never import the
store or the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("cli", "service", "web", "engine", "store", "config", "templating")
LOWER = {"templating", "config", "store", "leaf"}
ALLOWED: dict[str, set[str]] = {
    "cli": {"service", "web", "engine", "connectors"} | LOWER,
    "service": {"web", "engine", "connectors"} | LOWER,
    "web": {"engine", "connectors"} | LOWER,
    "engine": {"connectors"} | LOWER,
    "connectors": {"templating", "config", "leaf"},
    "templating": {"leaf"},
    "config": {"leaf"},
    "store": {"leaf"},
    "leaf": {"leaf"},
}


def room(module: str) -> str | None:
    """The room of a dotted module name (None: not ours)."""
    parts = module.split(".")
    if parts[0] == "connectors":
        return "connectors"
    if parts[0] != "daemon":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "leaf"


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] if node.module != "daemon" else [f"daemon.{a.name}" for a in node.names]
    return found


def modules() -> list[tuple[str, Path]]:
    paths = sorted([*(ROOT / "daemon").rglob("*.py"), *(ROOT / "connectors").rglob("*.py")])
    return [(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), p) for p in paths]


def wrong_way() -> list[str]:
    out = []
    for name, path in modules():
        source = room(name)
        assert source is not None
        for target in imports(path):
            dest = room(target)
            if dest is not None and dest != source and dest not in ALLOWED[source]:
                out.append(f"{name} ({source}) imports {target} ({dest})")
    return out


def test_imports_between_rooms_run_one_way() -> None:
    assert wrong_way() == []


def test_the_check_sees_a_lazy_import_the_wrong_way(tmp_path: Path) -> None:
    """The walk finds an import hidden in a function, and the table refuses store → engine."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from daemon.engine.cycle import Engine\n    from daemon import rules\n")
    assert imports(sample) == ["daemon.engine.cycle", "daemon.rules"]
    assert "engine" not in ALLOWED["store"] and "store" not in ALLOWED["connectors"]
    assert room("daemon.engine.cycle") == "engine" and room("daemon.rules") == "leaf"


def test_every_package_is_listed_for_the_wheel() -> None:
    """A new room that is not in pyproject's package list would be missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for top in ("daemon", "connectors") for p in (ROOT / top).rglob("__init__.py")}
    assert found - listed == set()
