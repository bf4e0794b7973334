"""The algorithm layer's modules import each other without a cycle (issue #23: config <-> registry <-> uncertainty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from empg_gym.agents.algorithms import AlgorithmConfig, EMPGConfig
from empg_gym.agents.algorithms.config import NAME_CHECKS
from empg_gym.errors import ConfigError
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _script():
    return load_script("import_cycles")


def test_no_import_cycle_among_the_algorithm_modules():
    cycles = _script().find_cycles(ROOT / "empg_gym" / "agents" / "algorithms", "empg_gym.agents.algorithms")
    assert cycles == []


def test_configs_import_no_registry_and_the_registries_check_the_names():
    script = _script()
    folder = ROOT / "empg_gym" / "agents" / "algorithms"
    known = {f"empg_gym.agents.algorithms.{p.stem}" for p in folder.glob("*.py")}
    config_imports = script.module_imports(folder / "config.py", "empg_gym.agents.algorithms.config",
                                           "empg_gym.agents.algorithms", known)
    assert config_imports == {"empg_gym.agents.algorithms.losses"}
    assert [f.__name__ for f in NAME_CHECKS[AlgorithmConfig]] == ["check_registered_names"]
    assert [f.__name__ for f in NAME_CHECKS[EMPGConfig]] == ["check_signal"]
    with pytest.raises(ConfigError, match=r"Unknown advantage estimator 'rlo'.*Did you mean 'rloo'"):
        AlgorithmConfig(estimator="rlo")
    with pytest.raises(ConfigError, match=r"Unknown advantage modifier 'nope'"):
        AlgorithmConfig(modifiers=("nope",))
    with pytest.raises(ConfigError, match=r"uncertainty must be a registered signal, got 'entropi'.*Did you mean "
                                          r"'entropy'"):
        EMPGConfig(uncertainty="entropi")
    with pytest.raises(ConfigError, match=r"uncertainty_samples must be an int >= 2 for 'mc_dropout'"):
        EMPGConfig(uncertainty="mc_dropout", uncertainty_samples=1)


def test_the_cycle_finder_sees_a_cycle_through_type_checking_imports(tmp_path):
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (tmp_path / "b.py").write_text("from pkg.a import A\n")
    (tmp_path / "c.py").write_text("def f():\n    from pkg.a import A\n")  # lazy: not a module-level edge
    assert _script().find_cycles(tmp_path, "pkg") == [["pkg.a", "pkg.b"]]
