"""Loading topologies from files and module references."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamsvc.errors import TopologyError
from streamsvc.topology import Topology
from streamsvc.topology.loader import load_topology


def test_a_topology_file_imports_the_module_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "shop_helpers_beside.py").write_text("def name() -> str:\n    return 'beside'\n")
    (tmp_path / "pipeline.py").write_text(
        "from shop_helpers_beside import name\n"
        "from streamsvc.topology import Topology\n"
        "topology = Topology(name())\n"
        "def other():\n"
        "    return Topology('other-' + name())\n"
    )
    assert load_topology(str(tmp_path / "pipeline.py")).name == "beside"
    assert load_topology(f"{tmp_path / 'pipeline.py'}:other").name == "other-beside"


def test_missing_file_and_wrong_attribute_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="does not exist"):
        load_topology(str(tmp_path / "absent.py"))
    (tmp_path / "not_a_topology.py").write_text("topology = 42\n")
    with pytest.raises(TopologyError, match="expected attribute 'topology' to be a streamsvc Topology"):
        load_topology(str(tmp_path / "not_a_topology.py"))
    assert isinstance(load_topology("tests.topologies.windowed_count:topology"), Topology)
