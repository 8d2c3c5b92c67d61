"""The layout's rules, checked: imports between the apps run one way, and the scoring module
stays free of Django (Triton's judge model and the TRL reward function import it)."""

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


def test_the_scoring_module_is_free_of_django():
    imported = _imports(ROOT / "labelling" / "scoring.py")
    assert not {m for m in imported if m.split(".")[0] in ("django", "labelling", "inference")}


def test_the_rules_module_is_free_of_django():
    # Like scoring: the TRL reward function scores rule criteria without settings.
    imported = _imports(ROOT / "labelling" / "rules.py")
    assert not {m for m in imported if m.split(".")[0] in ("django", "inference")}
    assert {m for m in imported if m.split(".")[0] == "labelling"} == {"labelling.runs"}
    assert "django" not in (ROOT / "labelling" / "runs" / "thinktags.py").read_text()


def test_the_layout_checks_see_the_code():
    # Guards the two tests above against passing on an empty or moved tree.
    assert len(_modules("labelling")) > 30
    assert "inference.engine" in _imports(ROOT / "inference" / "triton_worker.py")
