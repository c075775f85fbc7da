"""The import contract: arrows between recede's layers point one way (DESIGN.md, "Layout").

Every module under ``recede/`` is parsed (not imported) with ``ast``; every ``import`` counts,
at module level or inside a function, absolute or relative, and ``from package import name``
counts as an import of the submodule ``package.name`` when that is a module. A module may import
its own layer and the layers (or single modules) listed for it below; third-party packages are
free, except that no planner may reach torch or mujoco, directly or through the recede modules
it imports (and their parent packages, the root facade ``recede/__init__.py`` excepted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "recede"

# The contract. layer: (the modules it holds (a name covers its submodules; the longest match
# wins), what it may import besides its own layer: layers, or single modules spelled in full).
LEAVES = ("recede.errors", "recede._io", "recede._numerics", "recede._threads", "recede._options",
          "recede._cache", "recede._compile_notice", "recede._linalg", "recede._version",
          "recede._mujoco_log", "recede._learners")
_EXPERIMENTS = ("controllers", "envs", "planners", "policies", "problem", "models", "costs", "data",
                "plotting", "leaves")
CONTRACT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "leaves":          (LEAVES, ()),
    "costs":           (("recede.costs", "recede.swingup"), ("leaves",)),
    "models":          (("recede.models",), ("costs", "leaves")),
    "problem":         (("recede.problem",), ("recede.models.base", "costs", "leaves")),
    "planners":        (("recede.planners",), ("problem", "costs", "recede.models.base",
                                               "recede.models.analytic.kernels", "leaves")),
    "data":            (("recede.data",), ("leaves",)),
    "plotting":        (("recede.plotting",), ("leaves",)),
    "policies":        (("recede.policies",), ("models", "data", "leaves")),
    "controllers":     (("recede.controllers",), ("planners", "policies", "problem",
                                                  "recede.models.base", "costs", "leaves")),
    "envs":            (("recede.envs",), ("models", "costs", "problem", "data", "leaves")),
    "experiments":     (("recede.experiments",), _EXPERIMENTS),
    "policy_learning": (("recede.policy_learning",), ("experiments",) + _EXPERIMENTS),
    "sweeps":          (("recede.sweeps",), ("policy_learning", "experiments") + _EXPERIMENTS),
    "top":             (("recede", "recede.__main__", "recede.cli"), ("*",)),
}
# no planner may import these, directly or through recede modules
FORBIDDEN_FOR_PLANNERS = ("torch", "mujoco")
# the root package is exact-match only: "recede" must not swallow every module
_EXACT = {"recede"}


def discover(root: Path) -> dict[str, Path]:
    """Module name -> file of every module in the package at ``root`` (``__init__.py`` is the
    package's own module)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement in the file, resolved: relative
    imports made absolute, ``from a import b`` read as ``a.b`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub if sub in modules else target, node.lineno))
    return out


def import_map(root: Path) -> dict[str, list[tuple[str, int]]]:
    modules = discover(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(module: str, contract=CONTRACT) -> str | None:
    """The layer holding ``module`` (longest prefix), or None outside the package."""
    best, best_len = None, -1
    for layer, (prefixes, _) in contract.items():
        for p in prefixes:
            hit = module == p if p in _EXACT else (module == p or module.startswith(p + "."))
            if hit and len(p) > best_len:
                best, best_len = layer, len(p)
    return best


def _allowed(src_layer: str, target: str, contract) -> bool:
    allowed = contract[src_layer][1]
    if "*" in allowed or target in allowed:
        return True
    layer = layer_of(target, contract)
    return layer == src_layer or layer in allowed


def check(imports: dict[str, list[tuple[str, int]]], package: str = "recede",
          contract=CONTRACT, forbidden=FORBIDDEN_FOR_PLANNERS) -> list[str]:
    """Every breach of ``contract`` in an import map (module -> [(imported, line)]), as readable
    messages naming the importing module, the imported module and the rule."""
    problems = []
    for src in sorted(imports):
        src_layer = layer_of(src, contract)
        if src_layer is None:
            problems.append(f"{src} has no layer in the contract (add it to CONTRACT)")
            continue
        for target, line in imports[src]:
            if target.split(".")[0] != package:
                continue
            if layer_of(target, contract) is None:
                problems.append(f"{src}:{line} imports {target}, which has no layer in the contract")
            elif not _allowed(src_layer, target, contract):
                rule = ", ".join(contract[src_layer][1]) or "nothing above it"
                problems.append(
                    f"{src}:{line} ({src_layer}) imports {target} ({layer_of(target, contract)}): "
                    f"{src_layer} may import only its own layer and {rule}")
    # planners: no torch or mujoco, directly or through recede modules
    for src in sorted(imports):
        if layer_of(src, contract) != "planners":
            continue
        for chain, bad in _reaches(src, imports, package, forbidden):
            problems.append(f"{src} reaches {bad} through {' -> '.join(chain)}: planners never "
                            f"import {' or '.join(forbidden)}, not even through recede modules")
    return problems


def _reaches(src, imports, package, forbidden):
    """(chain, forbidden package) for each forbidden third-party package that ``src`` reaches
    through the recede modules it imports (breadth first, shortest chains)."""
    def parents(module):  # importing a.b.c runs a.b's __init__ too (the root facade excepted)
        parts = module.split(".")
        return [".".join(parts[:i]) for i in range(2, len(parts))]

    seen, queue, found = {src: [src]}, [src], {}
    while queue:
        mod = queue.pop(0)
        for target, _ in imports.get(mod, ()):
            top = target.split(".")[0]
            if top in forbidden and top not in found:
                found[top] = seen[mod] + [target]
            if top != package:
                continue
            for nxt in parents(target) + [target]:
                if nxt in imports and nxt not in seen:
                    seen[nxt] = seen[mod] + [nxt]
                    queue.append(nxt)
    return [(chain, top) for top, chain in sorted(found.items())]


def test_every_module_has_a_layer_and_every_arrow_points_down():
    problems = check(import_map(ROOT))
    assert not problems, "import contract broken:\n" + "\n".join(problems)


def test_the_checker_resolves_relative_function_level_and_submodule_imports(tmp_path):
    pkg = tmp_path / "recede"
    (pkg / "planners").mkdir(parents=True)
    (pkg / "models").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "planners" / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "base.py").write_text("")
    (pkg / "models" / "mujoco.py").write_text("")
    (pkg / "planners" / "a.py").write_text(
        "from . import b\n"
        "from ..models import base\n"
        "def f():\n"
        "    from recede.models import mujoco\n")
    (pkg / "planners" / "b.py").write_text("import recede.models.base as mb\n")
    m = import_map(pkg)
    assert sorted(m["recede.planners.a"]) == [("recede.models.base", 2), ("recede.models.mujoco", 4),
                                               ("recede.planners.b", 1)]
    assert m["recede.planners.b"] == [("recede.models.base", 1)]


def test_the_checker_fails_on_planted_violations(tmp_path):
    pkg = tmp_path / "recede"
    for d in ("", "planners", "models", "controllers"):
        (pkg / d).mkdir(parents=True, exist_ok=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "costs.py").write_text("from recede.planners import lqr\n")  # a cost importing a planner
    (pkg / "problem.py").write_text("from recede.models.base import Dynamics\n")  # allowed
    (pkg / "planners" / "lqr.py").write_text("from recede.problem import Problem\n")  # allowed
    (pkg / "planners" / "ilqr.py").write_text(
        "import numpy\n"
        "def fused():\n"
        "    from recede.models import helper\n")  # a model other than base: wrong way
    (pkg / "models" / "base.py").write_text("from recede import errors\n")
    (pkg / "models" / "helper.py").write_text("from recede.models import net\n")
    (pkg / "models" / "net.py").write_text("import torch\n")
    (pkg / "models" / "mujoco.py").write_text("from recede.controllers import mpc\n")  # upward
    (pkg / "controllers" / "mpc.py").write_text("from recede.planners import lqr\n")
    (pkg / "planners" / "sneaky.py").write_text("from recede.models import base, mujoco\n")
    (pkg / "stray.py").write_text("")  # a module nobody placed
    problems = check(import_map(pkg))
    text = "\n".join(problems)
    assert ("recede.costs:1 (costs) imports recede.planners.lqr (planners): costs may import only "
            "its own layer and leaves") in text
    assert "recede.planners.ilqr:3 (planners) imports recede.models.helper (models)" in text
    assert "recede.models.mujoco:1 (models) imports recede.controllers.mpc (controllers)" in text
    assert ("recede.planners.ilqr reaches torch through recede.planners.ilqr -> "
            "recede.models.helper -> recede.models.net -> torch") in text
    assert "recede.planners.sneaky:1 (planners) imports recede.models.mujoco (models)" in text
    assert "recede.stray has no layer in the contract" in text
    assert not any(p.startswith(("recede.problem", "recede.planners.lqr", "recede.controllers"))
                   for p in problems), text
    assert len(problems) == 6, text


def test_the_checker_on_a_synthetic_import_map():
    imports = {
        "recede.swingup": [("recede.models.analytic", 3), ("recede._linalg", 4), ("numba", 1)],
        "recede.models.analytic.kernels": [("recede.costs", 1), ("recede.models.analytic.system", 2)],
        "recede.planners.mcts": [("recede.models.analytic.kernels", 9)],
        "recede.planners.cem": [("recede.models.analytic.system", 5)],
        "recede.cli": [("recede.envs", 1)],
    }
    problems = check(imports)
    assert problems == [
        "recede.planners.cem:5 (planners) imports recede.models.analytic.system (models): planners "
        "may import only its own layer and problem, costs, recede.models.base, "
        "recede.models.analytic.kernels, leaves",
        "recede.swingup:3 (costs) imports recede.models.analytic (models): costs may import only "
        "its own layer and leaves",
    ]


@pytest.mark.parametrize("module, layer", [
    ("recede", "top"), ("recede.cli", "top"), ("recede.errors", "leaves"), ("recede._linalg", "leaves"),
    ("recede.swingup", "costs"), ("recede.models.analytic.kernels", "models"),
    ("recede.planners.ilqr", "planners"), ("recede.policy_learning.pets", "policy_learning"),
    ("numpy", None),
])
def test_layer_of(module, layer):
    assert layer_of(module) == layer
