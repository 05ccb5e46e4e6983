"""Fréchet distance, feature statistics, Inception-PSNR and the batched extractor."""

import numpy as np
import pytest
import scipy.linalg

from rgflow_jax.paper import fid, inception


def _psd(gen, dim, rank=None):
  a = gen.normal(size=(dim, rank or dim))
  return a @ a.T / dim


def test_frechet_distance_closed_form_for_commuting_covariances():
  """Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
  gen = np.random.default_rng(0)
  mu1, mu2 = gen.normal(size=16), gen.normal(size=16)
  a, b = gen.uniform(0.1, 3.0, 16), gen.uniform(0.1, 3.0, 16)
  # The same in a rotated basis (the covariances still commute).
  q, _ = np.linalg.qr(gen.normal(size=(16, 16)))
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = fid.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
  assert got == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("rank", [None, 20])  # full rank, and singular covariances
def test_frechet_distance_equals_scipy_sqrtm(rank):
  gen = np.random.default_rng(1)
  s1, s2 = _psd(gen, 48, rank), _psd(gen, 48, rank)
  mu1, mu2 = gen.normal(size=48), gen.normal(size=48)
  root = scipy.linalg.sqrtm(s1 @ s2)
  want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real
  assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6, abs=1e-8)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_symmetric():
  gen = np.random.default_rng(2)
  rows = gen.normal(size=(300, 32)) @ gen.normal(size=(32, 32))
  a, b = fid.FeatureStats(32).add(rows), fid.FeatureStats(32).add(rows[::-1] + 0.3)
  assert fid.fid_from_stats(a, a) == pytest.approx(0.0, abs=1e-8)
  assert fid.fid_from_stats(a, b) == pytest.approx(fid.fid_from_stats(b, a), rel=1e-9)
  assert fid.fid_from_stats(a, b) == pytest.approx(32 * 0.09, rel=1e-6)  # a pure shift


def test_feature_stats_in_batches_equal_numpys():
  gen = np.random.default_rng(3)
  rows = gen.normal(size=(101, 8)) + 5.0
  stats = fid.FeatureStats(8)
  for part in np.array_split(rows, 4):
    stats.add(part)
  assert stats.n == 101
  np.testing.assert_allclose(stats.mean, rows.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov, np.cov(rows, rowvar=False), rtol=1e-9, atol=1e-12)
  with pytest.raises(ValueError, match="at least 2 images"):
    _ = fid.FeatureStats(8).add(rows[:1]).cov


def test_frechet_distance_refuses_mismatched_shapes():
  with pytest.raises(ValueError, match="must agree"):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_psnr():
  true = np.array([0.0, 2.0, 4.0, 1.0])
  assert fid.inception_psnr(true, true) == float("inf")
  noisy = true + np.array([0.1, -0.1, 0.1, -0.1])
  assert fid.inception_psnr(noisy, true) == pytest.approx(10 * np.log10(16 / 0.01))


def test_extractor_pads_the_last_batch_and_keeps_the_order():
  params = inception.params_from_state(inception.random_state(1))
  images = np.random.default_rng(4).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
  out = fid.Extractor(params, batch_size=2).features(images)
  alone = fid.Extractor(params, batch_size=5).features(images)
  assert out.shape == (5, inception.FEATURES)
  np.testing.assert_allclose(out, alone, rtol=1e-4, atol=1e-5)
  assert not np.allclose(out[0], out[1])
