"""The layout's rules, checked: imports between the apps run one way, and the shared core
stays free of Django and of both apps (Triton's judge model and the TRL child import it)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_labelling_never_imports_inference():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if m.split(".")[0] == "inference")
        for path in _modules("labelling")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_is_free_of_django_and_of_both_apps():
    # Triton's judge model and the TRL child import it without settings.
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imports(path) if m.split(".")[0] in ("django", "labelling", "inference", "shaping_web")
        )
        for path in _modules("shaping_core")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_layout_checks_see_the_code():
    # Guards the tests above against passing on an empty or moved tree.
    assert len(_modules("labelling")) > 30
    assert {p.stem for p in _modules("shaping_core")} >= {"rules", "scoring", "thinktags", "stats", "weights"}
    assert "inference.engine" in _imports(ROOT / "inference" / "triton_worker.py")
