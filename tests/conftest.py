"""Hypothesis profiles for the property tests (see tests/README.md).

- ``default`` (loaded here): derandomized, so every run of the suite draws
  the same examples and a failure reproduces; the property tests' example
  budgets (:func:`tests.property_runs.examples`) keep them within 90 s
  together on a busy 2-core machine.
- ``thorough``: thousands of examples, drawn afresh each run (and
  remembered in ``.hypothesis/``), for before a release:
  ``.venv/bin/pytest tests/test_properties.py tests/test_metamorphic.py --hypothesis-profile=thorough``.

- ``no-shrink``: the default examples, a failure reported unreduced (quick).

Hypothesis' pytest plugin loads the profile given with
``--hypothesis-profile`` after this file is read.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

settings.register_profile("default", derandomize=True, database=None, **_COMMON)
settings.register_profile("thorough", derandomize=False, max_examples=2000, **_COMMON)
# The default examples without shrinking: a failure is reported at once, unreduced (for a quick look).
settings.register_profile("no-shrink", derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], **_COMMON)
settings.load_profile("default")
