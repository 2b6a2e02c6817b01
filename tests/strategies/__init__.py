"""Hypothesis strategies for the whole configuration schema, one module per part of it.

- :mod:`.registry`: the :class:`~.registry.Extension` registry, :class:`~.registry.Options`
  and the fleet skeleton (:class:`~.registry.Plan`) every strategy reads.
- :mod:`.distributions`: every distribution kind; the timer-error table.
- :mod:`.topology`: regions, AZs, clients (balanced or direct), balancers, pools, network.
- :mod:`.service`, :mod:`.gateway`, :mod:`.workload`, :mod:`.faults`: each part's extensions.
- :mod:`.experiment`: :func:`~.experiment.experiments`, every registered extension composed;
  output, overrides and variants.

Every module of this package is imported here, so a new one registers its
extensions without any other edit.
"""

from __future__ import annotations

import importlib
import pkgutil

from .experiment import experiments
from .registry import EXTENSIONS, Extension, Options, Plan, extension, extensions

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["EXTENSIONS", "Extension", "Options", "Plan", "experiments", "extension", "extensions"]
