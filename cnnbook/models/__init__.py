"""Model builders, one module per chapter (``lenet``, ``alexnet``, ``vgg``,
``resnet``, ``inception``); every public builder is also reachable here, as
``cnnbook.models.lenet5`` and so on."""
import importlib
import pkgutil

__path__ = __path__  # noqa: PLW0127 - keeps linters aware this is a package


def _modules():
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{__name__}.{info.name}")


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(name)
    for module in _modules():
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"cnnbook.models has no builder {name!r}")


def __dir__():
    return sorted(n for m in _modules() for n in getattr(m, "__all__", ()))
