"""What provisioning takes and returns: the spec, progress events, results and the failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import PvectlError

if TYPE_CHECKING:
    from ..writes import PlannedWrite

EventCallback = Callable[["ProvisionEvent"], None]


# ------------------------------------------------------------------------------------------------ types


@dataclass(frozen=True, slots=True)
class CloneSpec:
    """What to make. `memory` takes MiB (`4096`) or a unit (`4G`, `4096M`); `ip` is `dhcp` or
    `CIDR[,gw=IP]` (IPv4 or IPv6); `ssh_keys_file` defaults to `cloudinit.ssh_keys_file`, `ciuser` to
    `cloudinit.default_user`, `bridge` to `defaults.network_bridge`, `storage` (full clones) to
    `defaults.storage`. `target`: a node name, `auto`, or None (the template's node)."""

    template: str | int
    name: str
    vmid: int | None = None
    target: str | None = None
    storage: str | None = None
    linked: bool = False
    cores: int | None = None
    memory: int | str | None = None
    bridge: str | None = None
    ip: str | None = None
    ciuser: str | None = None
    ssh_keys_file: str | None = None
    disk: str | None = None              # the disk to grow; default: the boot disk (scsi0, virtio0, ...)
    disk_size: str | None = None         # `+10G` (grow by) or `50G` (absolute, grow only)
    start: bool = False
    wait_ip: bool = False                # implies start
    cleanup_on_failure: bool = False


@dataclass(frozen=True, slots=True)
class ProvisionEvent:
    name: str
    vmid: int | None
    step: str                 # plan | clone | config | resize | start | ip | cleanup | done
    state: str                # start | progress | done | failed | warning | info
    message: str
    fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vmid": self.vmid, "step": self.step, "state": self.state,
                "message": self.message, "fraction": self.fraction}


@dataclass(slots=True)
class ProvisionResult:
    """The outcome for one VM. `result`: created | exists | planned | failed | not started (a bulk run
    stopped by its deadline or Ctrl-C before this VM's turn) | in progress (Ctrl-C while its clone or a
    later step ran). `state` is the VM's
    power state as last seen (`absent` when nothing was left)."""

    name: str
    template: int | None = None
    vmid: int | None = None
    node: str | None = None
    result: str = "failed"
    state: str | None = None
    ip: str | None = None
    changed: bool = False
    steps: list[str] = field(default_factory=list)
    upids: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)   # an existing VM's settings that differ from the wish
    error: PvectlError | None = None
    planned: list[PlannedWrite] | None = None           # a dry run: the writes it would have sent

    @property
    def ok(self) -> bool:
        # `exists` with an error: the VM was there, but finishing it failed
        return self.error is None and self.result in ("created", "exists", "planned")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"vmid": self.vmid, "name": self.name, "node": self.node, "template": self.template,
                             "result": self.result, "status": self.state, "ip": self.ip, "changed": self.changed,
                             "steps": list(self.steps), "upids": dict(self.upids), "warnings": list(self.warnings),
                             "differs": list(self.differs)}
        if self.error is not None:
            d["error"] = {"type": self.error.type, "message": self.error.message, "hint": self.error.hint}
        if self.planned is not None:
            d["planned"] = [p.to_dict() for p in self.planned]
        return d


class ProvisionFailed(PvectlError):
    """A workflow step failed. `result` says what exists now (VMID, node, state, steps done); the exit
    code is the cause's (1 API/task error, 4 deadline, 5 node unreachable)."""

    def __init__(self, result: ProvisionResult, cause: PvectlError, message: str, hint: str | None) -> None:
        super().__init__(message, hint=hint, retryable=cause.retryable)
        self.result = result
        self.cause = cause
        # (each error class sets `exit_code` as a ClassVar; a failed workflow exits as its cause does)
        self.exit_code = cause.exit_code  # type: ignore[misc]
        self.upid = getattr(cause, "upid", None)
        self.node = result.node

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["error"]["cause"] = self.cause.type
        d["error"]["vm"] = {k: v for k, v in self.result.to_dict().items() if k != "error"}
        return d




class ProvisionInterrupted(KeyboardInterrupt):
    """Ctrl-C during provisioning: nothing new was started after it. `results` holds every VM of the
    run: made, in flight (with the clone's UPID), failed, or not started; Proxmox finishes the tasks
    already running. Running the same command again picks up where this one stopped."""

    def __init__(self, results: list[ProvisionResult]) -> None:
        super().__init__("interrupted")
        self.results = results
