"""The explorer file: the strongest latents of every level, their receptive fields and
traversal frames, inline, with nothing to fetch."""

import base64
import io
import re

import jax
import numpy as np
from PIL import Image

from helpers import random_flow
from rgflow_jax.core import pixels
from rgflow_jax.explore import export
from rgflow_jax.paper import latents, receptive


def _png(uri: str) -> np.ndarray:
  assert uri.startswith("data:image/png;base64,")
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_the_file_holds_the_strongest_latents_of_every_level_and_fetches_nothing(tmp_path):
  flow, params = random_flow(16, 3, 4, seed=4, hidden=8)
  rng = jax.random.PRNGKey(7)
  content = export.explorer_content(flow, params, rng, rf_samples=2, per_level=2,
                                    n_images=2)
  values = np.asarray(export.VALUES)
  key_rf, key_z = jax.random.split(rng)
  z = flow.sample_latents(key_z, 2, 0.8)
  assert [lv["level"] for lv in content["levels"]] == list(range(flow.num_levels))
  for lv in content["levels"]:
    sites, strengths = receptive.receptive_field_strengths(flow, params, lv["level"],
                                                           key_rf, 2)
    top = [tuple(int(v) for v in sites[k]) for k in np.argsort(-np.asarray(strengths))[:2]]
    assert [item["latent"] for item in lv["latents"]] == top
    for item in lv["latents"]:
      assert len(item["frames"]) == len(values)
      want = pixels.to_uint8_numpy(latents.traverse(flow, params, z, item["latent"], values))
      # frame k: the two samples side by side (figures.image_grid: a 1-pixel border)
      for frame, uri in zip(want, item["frames"]):
        got = _png(uri)
        np.testing.assert_array_equal(got[1:17, 1:17], frame[0])
        np.testing.assert_array_equal(got[1:17, 18:34], frame[1])
      assert _png(item["field_png"]).shape == (16, 16, 3)
  path = tmp_path / "explorer.html"
  summary = export.write_html(flow, params, path, rng, rf_samples=2, per_level=2,
                              n_images=2)
  text = path.read_text()
  assert summary == {f"level{lv['level']}": [it["latent"] for it in lv["latents"]]
                     for lv in content["levels"]}
  assert text.count("<figure class=latent") == 2 * flow.num_levels
  assert text.count("<img alt='frame") == 2 * flow.num_levels * len(values)
  # self-contained: no address outside the file
  assert not re.search(r"(src|href)=['\"]?(https?:|//)", text)
  assert "<link" not in text and "<script src" not in text
