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
