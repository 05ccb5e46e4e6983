"""README.md's code block runs as pasted, so it cannot rot; its links point at files."""

import re

import numpy as np
import pytest

from helpers import ROOT



def readme_block(heading: str) -> str:
  """The first ```python block under ``heading`` in README.md."""
  text = (ROOT / "README.md").read_text()
  section = text[text.index(heading):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.e2e
def test_the_readme_api_block_runs_as_pasted(capsys):
  code = readme_block("## The model in a few lines")
  namespace = {"__name__": "__main__"}
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (the README's own code)
  printed = capsys.readouterr().out.strip().splitlines()[-1]
  match = re.fullmatch(r"([\d,]+) parameters, ([\d.]+) bits/dim, round trip (\S+), "
                       r"samples \(4, 32, 32, 3\)", printed)
  assert match, printed
  flow, params = namespace["flow"], namespace["params"]
  assert int(match.group(1).replace(",", "")) == flow.num_params(params) > 0
  assert 0 < float(match.group(2)) < 16 and float(match.group(3)) < 1e-4
  assert namespace["samples"].dtype == np.uint8 and namespace["rf"].shape == (32, 32)
  assert np.isfinite(np.asarray(namespace["bpd"])).all() and namespace["bpd"].shape == (8,)


def test_the_readme_links_point_at_files():
  text = (ROOT / "README.md").read_text()
  links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", text)
  assert "LICENSE" in links and "docs/benchmark.md" in links
  missing = [l for l in links if not (ROOT / l).exists()]
  assert not missing, missing
