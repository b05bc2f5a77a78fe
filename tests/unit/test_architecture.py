"""The layout rules of design.md §1, enforced: features never import each other (they
talk through domain events on the bus and Protocols in cti.services), and the platform
(cti) never imports a feature. Feature packages are found from the ``cti.features``
entry points, so a feature added later is covered without touching this test."""

from __future__ import annotations

import ast
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from cti.features import ENTRY_POINT_GROUP

KNOWN = {"ivr", "acd", "stats", "recordings", "crm_bridge", "desktop"}


def feature_packages() -> set[str]:
    return {ep.value.split(":")[0].split(".")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)}


def package_files(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    files: list[Path] = []
    for location in spec.submodule_search_locations:
        files += sorted(Path(location).rglob("*.py"))
    return files


def imported_packages(path: Path, own: str) -> dict[str, int]:
    """Top-level packages ``path`` imports (anywhere in it, also inside functions), with
    the line of the first import; relative imports stay inside ``own``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [own if node.level else (node.module or "")]
        for name in names:
            top = name.split(".")[0]
            if top:
                found.setdefault(top, node.lineno)
    return found


def test_every_known_feature_is_registered() -> None:
    assert KNOWN <= feature_packages()


@pytest.mark.parametrize("feature", sorted(feature_packages()))
def test_features_never_import_each_other(feature: str) -> None:
    others = feature_packages() - {feature}
    bad = [
        f"{path}:{line} imports {pkg}"
        for path in package_files(feature)
        for pkg, line in imported_packages(path, feature).items()
        if pkg in others
    ]
    assert not bad, "features talk through cti events and services:\n" + "\n".join(bad)


def test_the_platform_never_imports_a_feature() -> None:
    features = feature_packages()
    bad = [
        f"{path}:{line} imports {pkg}"
        for path in package_files("cti")
        for pkg, line in imported_packages(path, "cti").items()
        if pkg in features
    ]
    assert not bad, "cti must not import features:\n" + "\n".join(bad)


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from . import x\n\ndef f():\n    import acd.live\n    from stats import a\n")
    assert imported_packages(src, "desktop") == {"desktop": 1, "acd": 4, "stats": 5}
