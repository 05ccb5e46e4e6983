"""The README's links point at files, and the docs have Python blocks (run as pasted in
tests/e2e/test_readme.py)."""

import re

from helpers import ROOT, doc_python_blocks


def test_the_docs_have_python_blocks_to_run():  # the test above is not vacuous
  assert "local-inference.md" in {n for n, _, _ in doc_python_blocks()}


def test_the_readme_links_point_at_files():
  text = (ROOT / "README.md").read_text()
  links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", text)
  assert "LICENSE" in links and "docs/benchmark.md" in links
  missing = [l for l in links if not (ROOT / l).exists()]
  assert not missing, missing
