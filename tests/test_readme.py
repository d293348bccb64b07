"""The README's usage example runs as written (it is the first thing a user copies)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_usage_example_runs(tmp_path, monkeypatch):
    if not README.exists():
        pytest.skip("README.md is not next to the tests (installed package)")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)   # the example saves a model file
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "ranker.npz").exists()


def test_every_test_the_readme_names_exists():
    # the README's table of promises names the tests that check them: each must exist, so that a
    # renamed or deleted test cannot leave a promise unchecked
    import ast
    if not README.exists():
        pytest.skip("README.md is not next to the tests (installed package)")
    text = README.read_text()
    table = text[text.index("### What is promised"):]
    table = table[:table.index("\n\n", table.index("|---|"))]
    tests_dir = README.parent / "tests"
    named, current = [], None
    for ref in re.findall(r"`([\w./]+\.py)?(::)?(test_\w+\*?)?`", table):
        path, _, name = ref
        if path:
            current = path
        if name:
            named.append((current, name))
    assert len(named) >= 25, named
    for path, name in named:
        tree = ast.parse((tests_dir / path).read_text())
        defined = {n.id for node in ast.walk(tree) if isinstance(node, ast.Assign) for n in node.targets
                   if isinstance(n, ast.Name)} | {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if name.endswith("*"):
            assert any(d.startswith(name[:-1]) for d in defined), (path, name)
        else:
            assert name in defined, f"the README names {path}::{name}, which does not exist"
    assert (tests_dir / "sanitizers" / "run_asan.sh").exists() and (tests_dir / "fuzz_campaign.py").exists()
