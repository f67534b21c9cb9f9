"""Hypothesis settings of the fuzzers: ~200 examples per test in CI, more with ``TALLYPORT_FUZZ_EXAMPLES``.

The profile is registered here and used by name (``settings(settings.get_profile(FUZZ_PROFILE))``) rather than
loaded globally, so it leaves every other Hypothesis test of the suite with its own settings. No fixtures
here: the suite-wide ones live in ``tests/conftest.py``.

    TALLYPORT_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/fuzz -q    # a long fuzzing run
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_PROFILE = "tallyport-fuzz"
FUZZ_EXAMPLES_DEFAULT = 200

settings.register_profile(
    FUZZ_PROFILE,
    max_examples=int(os.environ.get("TALLYPORT_FUZZ_EXAMPLES", FUZZ_EXAMPLES_DEFAULT)),
    # Deadlines would make a loaded CI machine fail a fuzzer for being slow, not for being wrong.
    deadline=None,
    # Mutated samples are large by design; filtering is part of some strategies.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
