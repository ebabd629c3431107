"""pvectl: operate Proxmox VE clusters safely.

    import pvectl
    with pvectl.Cluster.from_config() as pve:
        for vm in pve.vms.list(status="running"):
            print(vm.vmid, vm.name, vm.node)

Names are imported on first use, so `import pvectl.errors` (and the CLI's start-up) stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from typing import Any

    from . import errors
    from .cluster import Cluster
    from .config import Config, load_config

__all__ = ["Cluster", "Config", "errors", "load_config", "__version__"]
__version__ = "0.1.0"

_LAZY = {"Cluster": ("cluster", "Cluster"), "Config": ("config", "Config"),
         "load_config": ("config", "load_config"), "errors": ("errors", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pvectl' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
