"""The explorer's model side on a random RG-Flow (float64, L = 16, C = 3): edits equal
the full decode and touch the generation cone only, mixing is eq. 15, receptive fields
are the library's, nothing compiles after the warm-up, bad input is one line."""

import io
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import rgflow_jax
from helpers import random_flow, tiny_realnvp
from rgflow_jax.core import cones, pixels
from rgflow_jax.explore.session import Explorer, ExplorerError, png_bytes
from rgflow_jax.paper import latents, receptive

L, C = 16, 3


@pytest.fixture(scope="module")
def explorer(x64_module):
  flow, params = random_flow(L, C, 4, jnp.float64, seed=3, hidden=8)
  params = jax.device_put(params, jax.devices()[0])  # committed, as a loaded run's are
  images = np.random.default_rng(0).integers(0, 256, (3, L, L, C), dtype=np.uint8)
  e = Explorer(flow, params, images, rf_samples=4, inpaint_starts=4, inpaint_steps=5)
  e.warm_up()
  return e


def _decoded(explorer, z) -> np.ndarray:
  y, _ = explorer.flow.decode(explorer.params, z)
  return np.asarray(pixels.to_uint8(pixels.from_flow(y)))[0]


def test_an_image_opens_as_its_encoding_and_decodes_back_to_itself(explorer):
  view = explorer.open_test(2)
  np.testing.assert_array_equal(view.image, explorer.test_images[2])
  np.testing.assert_array_equal(_decoded(explorer, view.z), view.image)
  assert view.source == "test image 2"


def test_edits_equal_the_full_decode_and_change_only_the_generation_cone(explorer):
  flow = explorer.flow
  view = explorer.open_test(1)
  edits = [((5, 3, 1), 2.5), ((0, 0, 0), -3.0), ((8, 8, 0), 1.7), ((5, 3, 1), -2.0),
           ((15, 15, 1), 3.0)]
  compiles = explorer.compiles()
  shown = [explorer.view(view.key).image.copy()]
  for (i, j, c), value in edits:
    shown.append(explorer.edit(view.key, i, j, c, value).image.copy())
  assert explorer.compiles() == compiles  # the same programs for every site and view
  z = np.asarray(explorer.open_test(1).z).copy()
  for ((i, j, c), value), before, got in zip(edits, shown, shown[1:]):
    z[0, i, j, c] = value
    np.testing.assert_array_equal(got, _decoded(explorer, jnp.asarray(z)))
    cone = cones.generation_cone(flow.geometry, int(flow.level_of_site()[i, j]), (i, j))
    np.testing.assert_array_equal(got[~cone], before[~cone])
    assert (got != before).any()
    # What the page outlines is that cone, for the site's own level, or larger.
    assert (explorer.cone_mask(i, j) >= cone).all()
  np.testing.assert_array_equal(np.asarray(explorer.view(view.key).z), z)


def test_mixing_takes_the_chosen_levels_from_a_and_the_rest_from_b(explorer):
  a, b = explorer.open_test(0), explorer.open_sample(0.7, 5)
  for theta in range(explorer.flow.num_levels + 1):
    mixed = explorer.mix(a.key, b.key, range(theta, explorer.flow.num_levels))
    want = latents.mix_levels(explorer.flow, a.z, b.z, theta)
    np.testing.assert_array_equal(np.asarray(mixed.z), np.asarray(want))
    np.testing.assert_array_equal(mixed.image, _decoded(explorer, want))


def test_receptive_fields_are_the_librarys(explorer):
  params = rgflow_jax.bind(explorer.flow, explorer.params)
  for level in range(explorer.flow.num_levels):
    i, j, c = receptive.latents_of_level(explorer.flow, level)[-1]
    idx = len(receptive.latents_of_level(explorer.flow, level)) - 1
    want = rgflow_jax.receptive_field(params, level, idx, n_samples=4)
    np.testing.assert_allclose(explorer.receptive_field(int(i), int(j), int(c)), want,
                               rtol=1e-12, atol=0)


def test_an_uploaded_png_of_the_models_size_opens_and_others_get_one_line(explorer):
  image = explorer.test_images[0]
  view = explorer.open_png(png_bytes(image))
  np.testing.assert_array_equal(view.image, image)
  buf = io.BytesIO()
  Image.new("RGB", (L + 4, L)).save(buf, "PNG")
  jpeg = io.BytesIO()
  Image.new("RGB", (L, L)).save(jpeg, "JPEG")
  for data, message in [(buf.getvalue(), f"the PNG is {L + 4} x {L} pixels; this model "
                                          f"takes {L} x {L}: resize it first"),
                        (jpeg.getvalue(), "the file is a JPEG, not a PNG: upload a PNG"),
                        (b"not an image", "not an image PIL can read"),
                        (b"\0" * (5 << 20), "uploads are limited to 4 MiB")]:
    with pytest.raises(ExplorerError) as e:
      explorer.open_png(data)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_requests_are_one_line_errors(explorer):
  view = explorer.open_test(0)
  for call, message in [
      (lambda: explorer.open_test(3), "test image 3 does not exist: choose 0 .. 2"),
      (lambda: explorer.open_sample(5.0, 0), "temperature must be in 0 .. 2"),
      (lambda: explorer.edit(view.key, L, 0, 0, 1.0), f"outside the {L} x {L} x {C}"),
      (lambda: explorer.edit(view.key, 0, 0, 0, float("nan")), "must be finite"),
      (lambda: explorer.edit("v999", 0, 0, 0, 1.0), "no image 'v999' on show"),
      (lambda: explorer.mix(view.key, view.key, [7]), "levels must be in 0 .. 2"),
      (lambda: explorer.start_inpaint(view.key, np.zeros((L, L))), "paint a mask"),
  ]:
    with pytest.raises(ExplorerError, match=message):
      call()


def test_inpainting_runs_beside_the_requests_and_reports_its_steps(explorer):
  view = explorer.open_test(1)
  mask = np.zeros((L, L), bool)
  mask[4:8, 6:10] = True
  job = explorer.start_inpaint(view.key, mask, seed=1)
  other = explorer.open_test(0)
  for _ in range(600):
    if explorer.job(job.key).state != "running":
      break
    explorer.edit(other.key, 0, 0, 0, 0.1)  # requests are served meanwhile
    time.sleep(0.1)
  assert job.state == "done", job.error
  assert job.done == job.total == 5
  new = explorer.view(job.result["view"])
  np.testing.assert_array_equal(new.image[~mask], view.image[~mask])
  assert np.isfinite(job.result["psnr"]) and job.result["free_latents"] > 0


def test_the_downloads_hold_the_image_and_its_latents(explorer):
  view = explorer.open_test(0)
  saved = np.load(io.BytesIO(explorer.npz_bytes(view.key)))
  np.testing.assert_array_equal(saved["image"], view.image)
  np.testing.assert_array_equal(saved["latents"], np.asarray(view.z, np.float32)[0])
  np.testing.assert_array_equal(saved["level_of_site"], explorer.flow.level_of_site())
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(view.image)))),
                                view.image)


def test_views_are_bounded_and_real_nvp_is_refused(explorer):
  first = explorer.open_test(0)
  for _ in range(70):
    explorer.open_sample(1.0, 0)
  assert len(explorer.views) == 64 and first.key not in explorer.views
  flow = tiny_realnvp(8, 1)
  with pytest.raises(ExplorerError, match="this run is a RealNVP"):
    Explorer(flow, flow.init(jax.random.PRNGKey(0)))
  flow, params = random_flow(8, 2, 4)
  with pytest.raises(ExplorerError, match="grey .C = 1. or colour .C = 3. images, not 2"):
    Explorer(flow, params)
