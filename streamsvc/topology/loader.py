"""Load a topology from a Python file or a `module:attribute` reference."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from streamsvc.errors import TopologyError
from streamsvc.topology.model import Topology


def load_module(ref: str) -> ModuleType:
    """Import a topology file (its directory first on `sys.path`, as `python file.py` does, so it can
    import the modules beside it) or a module by name."""
    path = Path(ref.split(":", 1)[0])
    if path.suffix == ".py":
        if not path.is_file():
            raise TopologyError(f"topology file {path} does not exist")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = f"streamsvc_topology_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TopologyError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(ref.split(":", 1)[0])


def load_topology(ref: str) -> Topology:
    """`path/to/file.py`, `path/to/file.py:attr` or `package.module:attr`; the attribute defaults to
    `topology` and may be a Topology or a zero-argument function returning one."""
    attr = ref.split(":", 1)[1] if ":" in ref else "topology"
    module = load_module(ref)
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, Topology):
        obj = obj()
    if not isinstance(obj, Topology):
        raise TopologyError(
            f"{ref}: expected attribute {attr!r} to be a streamsvc Topology, got {type(obj).__name__}"
        )
    return obj
