"""The README's and the docs' Python blocks run as pasted, so that they cannot rot."""

import re

import numpy as np
import pytest

from helpers import ROOT, doc_python_blocks


def readme_block(heading: str, number: int = 0) -> str:
  """The ``number``-th (from 0) ```python block under ``heading`` in README.md."""
  text = (ROOT / "README.md").read_text()
  section = text[text.index(heading):]
  return re.findall(r"```python\n(.*?)```", section, re.S)[number]


def test_the_readme_api_block_runs_as_pasted(capsys):
  code = readme_block("## The model in a few lines")
  namespace = {"__name__": "__main__"}
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (the README's own code)
  printed = capsys.readouterr().out.strip().splitlines()[-1]
  match = re.fullmatch(r"([\d,]+) parameters, ([\d.]+) bits/dim, round trip (\S+), "
                       r"samples \(4, 32, 32, 3\)", printed)
  assert match, printed
  flow, params = namespace["flow"], namespace["params"]
  assert int(match.group(1).replace(",", "")) == flow.num_params(params.tree) > 0
  assert 0 < float(match.group(2)) < 16 and float(match.group(3)) < 1e-4
  assert namespace["samples"].dtype == np.uint8 and namespace["rf"].shape == (32, 32)
  assert np.isfinite(np.asarray(namespace["bpd"])).all() and namespace["bpd"].shape == (8,)


def test_the_readme_trained_run_block_runs_as_pasted(tmp_path, monkeypatch, capsys):
  """The README's second block on a trained run where it looks for one (a 2-step
  msds1:smoke run standing in for make demo's): load, receptive_field(params, level,
  idx), and the same jitted and vmapped over the level's latents."""
  import jax.numpy as jnp  # noqa: PLC0415

  from helpers import smoke_config  # noqa: PLC0415
  from rgflow_jax.run import training  # noqa: PLC0415
  c = smoke_config(tmp_path, num_steps=2, ckpt_every=2, eval_every=2, sample_every=0)
  training.train_and_evaluate(c, tmp_path / "runs" / "msds1-cpu")
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "__main__"}
  code = readme_block("## The model in a few lines", 1)
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (the README's own code)
  printed = capsys.readouterr().out.strip().splitlines()[-1]
  run, n = namespace["run"], namespace["n"]
  assert re.fullmatch(rf"step 2 \(best\): level 2 has {n} latents, the strongest is \d+",
                      printed), printed
  fields, rf = namespace["fields"], namespace["rf"]
  assert fields.shape == (n, 32, 32) and n == run.flow.latents_per_level()[2] > 1
  np.testing.assert_allclose(fields[0], rf, rtol=1e-5, atol=1e-6)  # float32
  assert float(jnp.abs(fields[1] - fields[0]).max()) > 0


@pytest.mark.parametrize("name,number,code", list(doc_python_blocks()))
def test_every_python_block_of_the_docs_runs_as_pasted(name, number, code):
  namespace = {"__name__": "__main__"}
  exec(compile(code, f"docs/{name}", "exec"), namespace)  # noqa: S102  (the docs' own code)
  if name == "local-inference.md":  # the cone's results are the whole image's
    import jax.numpy as jnp  # noqa: PLC0415
    ns = namespace
    flow, params, z, top, left = (ns[k] for k in ("flow", "params", "z", "top", "left"))
    full = flow.decode(params, z)[0][:, top:top + 4, left:left + 4, :].reshape(2, 16, 1)
    np.testing.assert_allclose(ns["y_region"], full, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ns["image"], flow.decode(params, ns["z_edited"])[0],
                               rtol=0, atol=1e-5)
    x_new = ns["baseline"].at[:, top:top + 4, left:left + 4, :].set(0.5)
    want = flow.log_prob_pixels(params, x_new) - flow.log_prob_pixels(params, ns["baseline"])
    np.testing.assert_allclose(ns["d"], want, rtol=1e-4, atol=1e-3)  # float32 log-densities
    assert float(jnp.abs(ns["d"]).max()) > 0
