"""The simulated cluster's operations and their rules, one module per concern.

`core.BackendCore` holds the state and what every concern needs; the concerns are mixins that import
only `core` and the helpers beside it (`common`, `bandwidth`, `snapdisks`, `vmstatus`):

- `reads`: cluster and node status, /cluster/resources, guest status, config and pending values;
- `tasklist`: the task list, status, log and stop;
- `power`, `delete`, `clone`, `config`, `storage` (disk resize), `migrate`: the writes;
- `control`: what the test control API does (nodes on and off, held locks, failing tasks);
- `access`: users, tickets and CSRF tokens for password logins.

Handlers either return the `data` of the answer, raise `ApiFail` (an immediate, SYNC error) or start a
task whose worker raises `TaskError` (the call returns a UPID, the task ends `TASK ERROR: ...`).
"""

from __future__ import annotations

from ..models import VM, State
from .access import Access
from .bandwidth import Copy, Segment, StorageBandwidth
from .clone import CloneMixin
from .common import (
    KVERSION,
    PVE_MANAGER,
    PVE_VERSION,
    ApiFail,
    Caller,
    config_value,
    expand_acl,
    fair_shares,
    is_cloudinit_key,
    is_drive_key,
    memory_mib,
    param_fail,
    parse_prop,
    parse_size,
    perm_fail,
    render_bytes,
    render_duration,
    unknown_guest,
    vm_cpus,
)
from .config import ConfigMixin
from .control import ControlMixin
from .delete import DeleteMixin
from .migrate import MigrateMixin
from .power import PowerMixin
from .reads import ReadMixin
from .storage import StorageMixin
from .tasklist import TaskListMixin

__all__ = ["KVERSION", "PVE_MANAGER", "PVE_VERSION", "VM", "ApiFail", "Backend", "Caller", "Copy", "Segment",
           "StorageBandwidth", "config_value", "expand_acl", "fair_shares", "is_cloudinit_key", "is_drive_key",
           "memory_mib", "param_fail", "parse_prop", "parse_size", "perm_fail", "render_bytes", "render_duration",
           "unknown_guest", "vm_cpus"]


class Backend(ReadMixin, TaskListMixin, PowerMixin, DeleteMixin, CloneMixin, ConfigMixin, StorageMixin,
              MigrateMixin, ControlMixin):
    """The cluster's rules. Thread-safe: one lock (`mu`) guards the state; workers sleep without it."""

    def __init__(self, state: State, *, time_scale: float = 1.0, seed: int = 0) -> None:
        super().__init__(state, time_scale=time_scale, seed=seed)
        self.access = Access(self)          # users, tickets and CSRF tokens (password logins)
