"""One error base: every error class the package defines is an RGFlowError."""



def test_every_error_the_package_defines_is_an_rgflow_error():
  """One base the commands catch (rgflow_jax.RGFlowError), each class keeping the
  built-in one a caller expects beside it."""
  import importlib  # noqa: PLC0415
  import inspect  # noqa: PLC0415
  import pkgutil  # noqa: PLC0415

  import rgflow_jax  # noqa: PLC0415
  errors = {}
  for info in pkgutil.walk_packages(rgflow_jax.__path__, "rgflow_jax."):
    module = importlib.import_module(info.name)
    for name, obj in vars(module).items():
      if (inspect.isclass(obj) and issubclass(obj, BaseException)
          and obj.__module__ == info.name):
        errors[f"{info.name}.{name}"] = obj
  assert len(errors) >= 15, sorted(errors)  # the base and every error the package raises
  assert [n for n, e in errors.items() if not issubclass(e, rgflow_jax.RGFlowError)] == []
  assert issubclass(rgflow_jax.RGFlowError, Exception)
  from rgflow_jax.data import DataError  # noqa: PLC0415
  from rgflow_jax.io import storage  # noqa: PLC0415
  assert issubclass(DataError, ValueError) and issubclass(storage.StorageError, OSError)
