"""Model builders, one module per chapter (``lenet``, ``alexnet``, ``vgg``,
``resnet``, ``inception``...); every public builder is also bound here, as
``cnnbook.models.lenet5``, ``cnnbook.models.alexnet`` and so on.

A builder may share its name with its module (``alexnet``): the builders are
bound after all modules are imported, so the name means the builder.
"""

import importlib
import pkgutil

__all__ = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_module, "__all__", ()):
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)

del _info, _module, _name
