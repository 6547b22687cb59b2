"""Every ```python block in README.md and docs/*.md runs (blocks of one page share a namespace, in order)."""
import importlib.util
import pathlib
import re

import pytest

HAVE_TORCH = importlib.util.find_spec("torch") is not None

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = [DOCS.parent / "README.md"] + sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_examples_run(page, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no python examples"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(blocks):
        if not HAVE_TORCH and re.search(r"^\s*(import torch|from torch)", block, flags=re.M):
            # torch is an optional extra (CI installs it): this block and the later ones, which
            # may use what it made, need it; the earlier ones have run
            pytest.skip(f"{page.name} block {i} on needs PyTorch (pip install torch)")
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # re-raise with the block that failed
            raise AssertionError(f"{page.name} block {i} failed: {e!r}\n{block}") from e
