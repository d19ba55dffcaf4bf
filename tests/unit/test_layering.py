"""The house rules on imports, read from the source (every import statement,
inside functions too), so a lazy import cannot slip a layer past them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_FORBIDDEN = ("service", "grpc", "torch", "open_clip", "torchvision", "PIL", "google.protobuf")
PROTOBUF = ("google.protobuf", "grpc", "service.api", "service.convert")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def module_path(name: str) -> Path | None:
    for candidate in (ROOT / Path(*name.split(".")).with_suffix(".py"), ROOT / Path(*name.split(".")) / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


DOMAIN_MODULES = sorted((ROOT / "recommender").rglob("*.py"))


@pytest.mark.parametrize("path", DOMAIN_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_domain_imports_no_transport_and_no_model(path):
    offending = sorted(name for name in imported_modules(path) if within(name, DOMAIN_FORBIDDEN))
    assert not offending, f"{path.relative_to(ROOT)} imports {offending}: recommender/ stays free of these"


def test_the_domain_modules_were_found():
    assert len(DOMAIN_MODULES) > 5


def test_the_use_cases_reach_no_protobuf_through_any_project_module():
    """service/app.py and every project module it imports, directly or not."""
    seen: dict[str, Path] = {}
    pending = ["service.app"]
    while pending:
        name = pending.pop()
        path = module_path(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        for imported in imported_modules(path):
            assert not within(imported, PROTOBUF), f"{name} imports {imported}, reached from service.app"
            if within(imported, ("service", "recommender")):
                pending.append(imported)
    assert {"service.app", "service.requests", "service.runtime"} <= set(seen)


# Decoding (an unset oneof, unknown enum, unreadable pixels) may refuse input too;
# every other check on values belongs to service/validation.py.
MAY_REFUSE_INPUT = {"service/validation.py", "service/convert.py", "service/embedding/images.py"}


def test_input_is_refused_by_the_validation_layer_only():
    raising = set()
    for path in sorted((ROOT / "recommender").rglob("*.py")) + sorted((ROOT / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None and "InvalidArgument" in ast.unparse(node.exc):
                raising.add(path.relative_to(ROOT).as_posix())
    assert raising - MAY_REFUSE_INPUT == set()
    assert "service/validation.py" in raising
