"""The MSDS semantic scorer against the generator's own labels."""

import numpy as np
import pytest

from rgflow_jax.data import msds
from rgflow_jax.paper import semantic


@pytest.fixture(scope="module", params=msds.VARIANTS)
def real(request):
  images, labels = msds.generate(request.param, 200, seed=11)
  return request.param, images, labels


def test_scorer_recovers_the_labels_of_real_images(real):
  """Acceptance: median colour error < 10 (of 255), median angle error < 10 degrees
  (mod 180), over the 16 x 200 ovals of 200 real images. Measured: ~1 and ~1."""
  _, images, labels = real
  props = semantic.oval_properties(images)
  assert np.isfinite(props).all()
  d_angle = np.abs(props[..., 0] - labels[..., 2]) % 180.0
  d_angle = np.minimum(d_angle, 180.0 - d_angle)
  d_colour = np.abs(props[..., 1:] - labels[..., 3:]).mean(axis=-1)
  assert np.median(d_colour) < 10.0
  assert np.median(d_angle) < 10.0
  # not only the median: most ovals are close
  assert np.mean(d_colour < 15) > 0.85 and np.mean(d_angle < 15) > 0.85


def test_scores_tell_the_two_sets_apart():
  """MSDS1 keeps colours together (per-oval jitter of +-32: std ~19), MSDS2 angles
  (a 45-degree spread: std ~13 degrees); each is wide on the other's feature."""
  s1 = semantic.image_scores(msds.generate("msds1", 100, seed=3)[0])
  s2 = semantic.image_scores(msds.generate("msds2", 100, seed=3)[0])
  assert np.median(s1["colour_spread"]) < 25 < 50 < np.median(s2["colour_spread"])
  assert np.median(s2["angle_spread"]) < 20 < 35 < np.median(s1["angle_spread"])
  # compare(): real MSDS1 against itself is inside its band, MSDS2 mostly outside.
  real1 = msds.generate("msds1", 100, seed=4)[0]
  inside = semantic.compare(msds.generate("msds1", 100, seed=5)[0], real1)
  outside = semantic.compare(msds.generate("msds2", 100, seed=5)[0], real1)
  assert inside["colour_spread"]["share_in_band"] > 0.85
  assert outside["colour_spread"]["share_in_band"] < 0.1


def test_axial_spread_of_axes():
  assert semantic.axial_spread([10.0, 10.0, 190.0]) == pytest.approx(0.0, abs=1e-6)
  # 0 and 179 degrees are the same axis, almost: a spread of about half a degree
  assert semantic.axial_spread([0.0, 179.0]) == pytest.approx(0.5, abs=0.01)


def test_bad_input_is_a_clear_error():
  with pytest.raises(ValueError, match=r"\(n, 32, 32, 3\)"):
    semantic.image_scores(np.zeros((2, 16, 16, 3), np.uint8))
  with pytest.raises(ValueError, match="uint8"):
    semantic.image_scores(np.zeros((2, 32, 32, 3), np.float32))
  # a black image has no ovals: NaN, not a crash
  props = semantic.oval_properties(np.zeros((1, 32, 32, 3), np.uint8))
  assert np.isnan(props).all()
