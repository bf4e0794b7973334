"""Every docstring example in the package runs and prints what it shows (the examples are documentation)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import empg_gym

MODULES = sorted(m.name for m in pkgutil.walk_packages(empg_gym.__path__, "empg_gym.", onerror=lambda name: None))


def test_the_package_has_modules_with_examples():
    assert len(MODULES) > 40 and "empg_gym.bench.sweep" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name.startswith("empg_gym.integrations.verl") and importlib.util.find_spec("verl") is None:
        pytest.skip("verl is not installed (its modules' examples run in .venv-verl)")
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed (output above)"
