"""The 2-D pinwheel experiment (App. E): a short run writes its JSON and figure, and learns."""

import json

import pytest

from experiments import pinwheel


@pytest.mark.campaign
def test_short_run_writes_json_and_figure_and_learns(tmp_path):
  res = pinwheel.run(tmp_path, seeds=(0,), steps=300, n_eval=2000)
  saved = json.loads((tmp_path / "pinwheel.json").read_text())
  assert (tmp_path / "pinwheel.png").stat().st_size > 10_000
  for prior in ("laplace", "gaussian"):
    r = saved[prior]
    assert 0.25 <= r["purity_mean"] <= 1.0
    run = r["runs"][0]
    assert len(run["per_group"]) == 4
    # learned something: a fresh flow with a unit-variance prior scores > 3 nats here
    assert run["test_nll"] < 2.8
  assert res["laplace"]["purity_mean"] == saved["laplace"]["purity_mean"]
