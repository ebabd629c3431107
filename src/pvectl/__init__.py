"""pvectl: operate Proxmox VE clusters safely.

    import pvectl
    with pvectl.Cluster.from_config(timeout=600) as pve:
        for vm in pve.vms.list(status="running"):
            print(vm.vmid, vm.name, vm.node)
        pve.vms.shutdown("web-1", timeout=60)

Names are imported on first use, so `import pvectl` (and the CLI's start-up) stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from typing import Any

    from . import errors
    from .cluster import Cluster
    from .config import Config, load_config
    from .deadline import Deadline
    from .diagnose import Diagnosis
    from .drain import DrainPlan, DrainResult
    from .errors import (
        AlreadyExists,
        ApiError,
        AuthError,
        ConfigError,
        CredentialError,
        DeadlineExceeded,
        GuardRefused,
        Locked,
        NodeUnreachable,
        NotFound,
        ParameterError,
        PermissionDenied,
        PvectlError,
        TaskError,
        TaskFailed,
        TaskTimeout,
        TlsError,
        UsageError,
    )
    from .membership import ClusterStatus, NodeMembership
    from .nodes import NodeStatus, NodeSummary
    from .provision import ProvisionFailed, ProvisionResult
    from .results import OpResult
    from .session import Session
    from .tasks import Progress, StopResult, Task, TaskResult, TasksInterrupted, TaskStatus, TaskSummary
    from .templates import TemplateInfo
    from .vms import MigrationCheck, MigrationInterrupted, MigrationResult, VmStatus, VmSummary
    from .writes import PlannedWrite

__version__ = "0.1.0"

_ERRORS = ("PvectlError", "ConfigError", "CredentialError", "TlsError", "UsageError", "GuardRefused", "ApiError",
           "AuthError", "PermissionDenied", "NotFound", "AlreadyExists", "Locked", "ParameterError",
           "NodeUnreachable", "DeadlineExceeded", "TaskError", "TaskFailed", "TaskTimeout")

# public name -> (module, attribute; None: the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Cluster": ("cluster", "Cluster"), "Session": ("session", "Session"),
    "Config": ("config", "Config"), "load_config": ("config", "load_config"),
    "errors": ("errors", None), "Deadline": ("deadline", "Deadline"),
    # results
    "OpResult": ("results", "OpResult"), "PlannedWrite": ("writes", "PlannedWrite"),
    "Task": ("tasks", "Task"), "TaskResult": ("tasks", "TaskResult"), "TaskStatus": ("tasks", "TaskStatus"),
    "Progress": ("tasks", "Progress"), "TaskSummary": ("tasks", "TaskSummary"),
    "TasksInterrupted": ("tasks", "TasksInterrupted"),
    "ClusterStatus": ("membership", "ClusterStatus"), "NodeMembership": ("membership", "NodeMembership"),
    "VmSummary": ("vms", "VmSummary"), "VmStatus": ("vms", "VmStatus"),
    "NodeSummary": ("nodes", "NodeSummary"), "NodeStatus": ("nodes", "NodeStatus"),
    "TemplateInfo": ("templates", "TemplateInfo"),
    "ProvisionResult": ("provision", "ProvisionResult"), "ProvisionFailed": ("provision", "ProvisionFailed"),
    "MigrationCheck": ("vms", "MigrationCheck"), "MigrationResult": ("vms", "MigrationResult"),
    "MigrationInterrupted": ("vms", "MigrationInterrupted"), "StopResult": ("tasks", "StopResult"),
    "DrainPlan": ("drain", "DrainPlan"), "DrainResult": ("drain", "DrainResult"),
    "Diagnosis": ("diagnose", "Diagnosis"),
    **{name: ("errors", name) for name in _ERRORS},
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pvectl' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
