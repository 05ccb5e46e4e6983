"""Fréchet Inception distance and Inception-PSNR (Tables B1, F1, G1).

FID between two image sets is the Fréchet distance of two Gaussians fitted to their
Inception pool3 features (:mod:`rgflow_jax.paper.inception`):

    FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr (S_1^1/2 S_2 S_1^1/2)^1/2

The last trace equals tr (S_1 S_2)^1/2; it is computed from two symmetric eigen-
decompositions in float64 (S_1^1/2 from S_1's, then the eigenvalues of the symmetric
S_1^1/2 S_2 S_1^1/2), with round-off's small negative eigenvalues set to zero: no
complex parts to discard, as a general matrix square root of S_1 S_2 leaves. Covariances
are the unbiased ones (divided by n - 1), as in the reference implementations.

FID depends on the number of images (it is biased upward for small sets): compare
figures computed from the same number. Inception-PSNR (App. F) is the PSNR of an
image's features against the true image's, the peak being the largest true feature.
"""

from __future__ import annotations

import jax
import numpy as np

from rgflow_jax.io.progress import bar as progress_bar
from rgflow_jax.paper import inception


class FeatureStats:
  """Running mean and covariance of feature rows, in float64."""

  def __init__(self, dim: int = inception.FEATURES):
    self.n, self.total, self.outer = 0, np.zeros(dim), np.zeros((dim, dim))

  def add(self, rows) -> FeatureStats:
    rows = np.asarray(rows, np.float64)
    self.n += len(rows)
    self.total += rows.sum(axis=0)
    self.outer += rows.T @ rows
    return self

  @property
  def mean(self) -> np.ndarray:
    return self.total / self.n

  @property
  def cov(self) -> np.ndarray:
    if self.n < 2:
      raise ValueError(f"a covariance needs at least 2 images, got {self.n}")
    mu = self.mean
    return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)


def _sqrt_psd(a) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix (eigenvalues below zero
  from round-off set to zero)."""
  values, vectors = np.linalg.eigh((a + a.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2) -> float:
  """tr (sigma1 sigma2)^1/2 for symmetric PSD sigma1, sigma2."""
  root = _sqrt_psd(np.asarray(sigma1, np.float64))
  inner = root @ np.asarray(sigma2, np.float64) @ root
  values = np.linalg.eigvalsh((inner + inner.T) / 2)
  return float(np.sum(np.sqrt(np.clip(values, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet (2-Wasserstein) distance squared between N(mu1, sigma1) and N(mu2, sigma2)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"means {mu1.shape}, {mu2.shape} and covariances {sigma1.shape}, "
                     f"{sigma2.shape} must agree")
  diff = mu1 - mu2
  distance = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
              - 2.0 * trace_sqrt_product(sigma1, sigma2))
  return float(max(distance, 0.0))


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
  return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def inception_psnr(features, true_features) -> float:
  """PSNR (dB) of feature vectors against the true image's, peak = max true feature."""
  f, t = np.asarray(features, np.float64), np.asarray(true_features, np.float64)
  mse = float(np.mean((f - t) ** 2))
  peak = float(np.max(np.abs(t)))
  return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


class Extractor:
  """Inception features of uint8 images in batches, one compiled program per shape."""

  def __init__(self, params, batch_size: int = 50):
    self.params = jax.device_put(params)
    self.batch_size = batch_size
    self._features = jax.jit(inception.features)

  @classmethod
  def from_file(cls, path, batch_size: int = 50) -> Extractor:
    """From a weights file; ``"download"``: the published weights, fetched once to the
    cache (needs network and torch)."""
    if str(path) == "download":
      path = inception.cached_weights()
    return cls(inception.load_weights(path), batch_size)

  def features(self, images_uint8, progress: bool = False, desc: str = "Inception") -> np.ndarray:
    """(N, 2048) float32 features; a short last batch is padded to the batch size (one
    shape, one compile), a set smaller than a batch is one batch of its own size."""
    images = np.asarray(images_uint8)
    size = max(1, min(self.batch_size, len(images)))
    out = []
    for s in progress_bar(range(0, len(images), size), progress, desc=desc, unit="batch"):
      batch = images[s:s + size]
      n = len(batch)
      if n < size:
        batch = np.concatenate([batch, np.repeat(batch[-1:], size - n, 0)])
      out.append(np.asarray(self._features(self.params, batch))[:n])
    return np.concatenate(out) if out else np.zeros((0, inception.FEATURES), np.float32)

  def stats(self, images_uint8, progress: bool = False, desc: str = "Inception") -> FeatureStats:
    return FeatureStats().add(self.features(images_uint8, progress, desc))
