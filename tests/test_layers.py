"""The architecture's rules, checked on the source: backends are leaves, the package has no import
cycle, the adapter is the only caller of a backend, and the Cython core's compile-time copies of
the contract's constants equal the contract (docs/kernels.md)."""
import ast
import re
from pathlib import Path

import pytest

import fastwlr
from fastwlr.backends import _contract

PACKAGE = Path(fastwlr.__file__).resolve().parent
BACKENDS = PACKAGE / "backends"


def _module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path):
    """Absolute names of the modules ``path`` imports (module level and inside functions alike).
    ``.pyx`` files: their Python-level ``import``/``from`` lines and ``cimport`` lines."""
    here = _module_name(path)
    package = here if path.stem == "__init__" else here.rpartition(".")[0]
    text = path.read_text()
    found = set()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(package, node.level, node.module)
                for alias in node.names:  # "from . import x": the submodule x if there is one, else the package
                    sub = f"{base}.{alias.name}"
                    found.add(sub if _existing([sub]) else base)
    else:
        for m in re.finditer(r"^\s*(?:from\s+(\.*)([\w.]*)\s+c?import|c?import\s+([\w.]+))", text, re.M):
            dots, mod, plain = m.groups()
            found.add(_resolve(package, len(dots or ""), mod) if plain is None else plain)
    return found


def _resolve(package, level, module):
    if level == 0:
        return module
    base = package.split(".")
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _existing(names):
    """Only the fastwlr modules among ``names`` (submodule guesses that are not files dropped)."""
    out = set()
    for name in names:
        if not name or not name.startswith("fastwlr"):
            continue
        parts = name.split(".")[1:]
        p = PACKAGE.joinpath(*parts) if parts else PACKAGE
        if p.with_suffix(".py").exists() or p.with_suffix(".pyx").exists() or (p / "__init__.py").exists() \
                or p.with_suffix(".pxd").exists():
            out.add(name)
    return out


def _sources(root):
    return sorted(p for p in root.rglob("*") if p.suffix in (".py", ".pyx", ".pxd") and p.is_file())


def test_backends_import_nothing_above_them():
    offenders = {}
    for path in _sources(BACKENDS):
        above = {m for m in _existing(_imports(path)) if not m.startswith("fastwlr.backends")}
        if above:
            offenders[str(path.relative_to(PACKAGE))] = sorted(above)
    assert not offenders, f"backends must be leaves: {offenders}"


def test_the_checker_sees_imports_of_every_form(tmp_path):
    # the rule above must be able to fail: relative, absolute, lazy and cimport forms are all seen
    pkg = BACKENDS / "reference"
    for text in ("from ... import scoring\n", "from ..._sgd import fit_sgd\n", "import fastwlr.topk\n",
                 "def f():\n    from ...estimators import X\n"):
        fake = pkg / "_probe_layers.py"
        try:
            fake.write_text(text)
            assert any(not m.startswith("fastwlr.backends") for m in _existing(_imports(fake))), text
        finally:
            fake.unlink()


def _graph():
    top = [p for p in PACKAGE.glob("*.py")]
    names = {_module_name(p): p for p in top}
    return {name: {m for m in _existing(_imports(path)) if m in names and m != name}
            for name, path in names.items()}


def _cycles(graph):
    """Every elementary cycle's nodes, found by depth-first search from each node."""
    found = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    found.append(path)
                elif nxt not in path and nxt > start:  # each cycle once, from its smallest node
                    stack.append((nxt, path + [nxt]))
    return found


def test_no_import_cycle_among_the_package_modules():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles among fastwlr/*.py: {cycles}"


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_only_the_adapter_calls_a_backend():
    # the kernel entry points of the contract appear as calls only in fastwlr/_kernels.py
    entry = re.compile(r"\.(score_dense|score_csr|score_topk_dense|score_topk_csr|objective_grad_dense|"
                       r"objective_grad_csr|sgd_epoch_dense|sgd_epoch_csr|objective_grad_colsq_dense|"
                       r"weighted_column_sq_dense)\(")
    callers = [p.name for p in PACKAGE.glob("*.py") if p.name != "_kernels.py" and entry.search(p.read_text())]
    assert callers == []
    assert "get_backend(" not in "".join(p.read_text() for p in PACKAGE.glob("*.py")
                                         if p.name not in ("_kernels.py", "_config.py", "__init__.py"))


@pytest.mark.requires_backend("cython")
def test_compiled_constants_equal_the_contract():
    from fastwlr.backends.cython_core import _sgd as sgd
    compiled = sgd.compiled_constants()
    assert compiled, "nothing to compare"
    for name, value in compiled.items():
        assert getattr(_contract, name) == value, name
    codes = {**_contract.OPTIMIZERS, **{f"w_{k}": v for k, v in _contract.WEIGHTINGS.items()}}
    assert codes["sgd"] == compiled["SGD"] and codes["adagrad"] == compiled["ADAGRAD"]
    assert codes["w_iwa"] == compiled["IWA"] and _contract.SCHEDULES["optimal"] == compiled["OPTIMAL"]
    assert [_contract.OUTPUT_CODES[o] for o in _contract.OUTPUTS] == [compiled["LOG_ODDS"], compiled["ODDS"],
                                                                     compiled["PROBA"]]
