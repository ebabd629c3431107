"""`pve.vms.clone`: one VM, or `count` of them, from a template (the workflow: `pvectl.provision`).

    pve.vms.clone("ubuntu-24.04-cloud", "web-1", cores=2, memory="2G", ip="dhcp", start=True, wait_ip=True)
    pve.vms.clone("ubuntu-24.04-cloud", "web-{n}", count=3, start=True)       # web-1, web-2, web-3

The call always runs the whole workflow (plan, clone, configure, grow, start, wait for an IP) and
returns when it has ended: a Proxmox clone task is only its first step, and a VM left cloned but not
configured is what re-running the call would have to finish. `wait=False` is therefore refused
(UsageError); `timeout` (or the session's) bounds the whole workflow instead, with exit 4 and the
UPID when it passes. Progress goes to the session's `on_event` as `{"event": "clone", "name",
"vmid", "step", "state", "message", "fraction"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, Unpack, overload

from ..errors import UsageError

if TYPE_CHECKING:
    from ..deadline import Deadline
    from ..provision import CloneSpec, ProvisionEvent, ProvisionResult
    from ..session import Session
    from ..writes import PlannedWrite


class CloneOptions(TypedDict, total=False):
    """What the new VM gets (all optional; unset: the template's value or the config's default)."""

    vmid: int | None                # default: the lowest free one in vmid_ranges.vms
    node: str | None                # a node, or `auto` (default: the template's node)
    storage: str | None             # full clone's target storage (default: defaults.storage)
    linked: bool                    # a linked clone (stays on the template's storage)
    cores: int | None
    memory: int | str | None        # MiB (4096) or with a unit (4G)
    bridge: str | None              # net0's bridge (default: defaults.network_bridge)
    ip: str | None                  # `dhcp` or CIDR[,gw=IP]
    gw: str | None                  # the gateway of a static `ip`
    ciuser: str | None              # default: cloudinit.default_user
    ssh_keys_file: str | None       # default: cloudinit.ssh_keys_file
    disk: str | None                # the disk `disk_size` grows (default: the boot disk)
    disk_size: str | None           # `+10G` (by) or `50G` (to); never shrinks
    start: bool
    wait_ip: bool                   # start, then wait for the guest agent's address
    cleanup_on_failure: bool        # delete the new VM when a step after the clone fails


def clone_spec(template: str | int, name: str, **options: Unpack[CloneOptions]) -> CloneSpec:
    """The `CloneSpec` of one VM; `gw` joins `ip` as Proxmox's `ip=CIDR,gw=IP`."""
    from ..provision import CloneSpec

    unknown = sorted(set(options) - set(CloneOptions.__annotations__))
    if unknown:
        raise UsageError(f"unknown clone option(s): {', '.join(unknown)}",
                         hint=f"the options: {', '.join(CloneOptions.__annotations__)}")
    ip, gw = options.get("ip"), options.get("gw")
    if gw is not None:
        if ip is None or ip == "dhcp" or ",gw=" in ip:
            raise UsageError(f"gw={gw} needs a static ip=CIDR without its own gw",
                             hint="e.g. ip='10.0.0.5/24', gw='10.0.0.1' (or ip='10.0.0.5/24,gw=10.0.0.1')")
        ip = f"{ip},gw={gw}"
    return CloneSpec(template=template, name=name, vmid=options.get("vmid"), target=options.get("node"),
                     storage=options.get("storage"), linked=options.get("linked", False), cores=options.get("cores"),
                     memory=options.get("memory"), bridge=options.get("bridge"), ip=ip, ciuser=options.get("ciuser"),
                     ssh_keys_file=options.get("ssh_keys_file"), disk=options.get("disk"),
                     disk_size=options.get("disk_size"), start=options.get("start", False),
                     wait_ip=options.get("wait_ip", False),
                     cleanup_on_failure=options.get("cleanup_on_failure", False))


def name_pattern(name: str | None) -> str:
    """The names of a `count` clone: `web-{n}` as given, or a prefix `web` -> `web-{n}`."""
    if not name:
        raise UsageError("--count needs --name-pattern (e.g. web-{n}) or a NAME prefix")
    return name if "{n" in name else f"{name}-{{n}}"


def first_index(session: Session, pattern: str, name_start: int | str) -> int:
    """`name_start`: a number, or `next` (after the highest `{n}` the pattern names in use now)."""
    if name_start == "next":
        from ..provision import next_free_index

        names = {str(e.get("name")) for e in session.transport.get("/cluster/resources", {"type": "vm"})
                 if e.get("name")}
        return next_free_index(pattern, names)
    try:
        return int(name_start)
    except (TypeError, ValueError):
        raise UsageError(f"--name-start must be a number or 'next', not '{name_start}'") from None


@overload
def clone(session: Session, template: str | int, name: str | None, *, count: None = ..., name_start: int | str = ...,
          max_per_node: int = ..., max_per_storage: int = ..., wait: bool = ...,
          timeout: Deadline | float | None = ..., **options: Unpack[CloneOptions]) -> ProvisionResult: ...
@overload
def clone(session: Session, template: str | int, name: str | None, *, count: int, name_start: int | str = ...,
          max_per_node: int = ..., max_per_storage: int = ..., wait: bool = ...,
          timeout: Deadline | float | None = ..., **options: Unpack[CloneOptions]) -> list[ProvisionResult]: ...


def clone(session: Session, template: str | int, name: str | None, *, count: int | None = None,
          name_start: int | str = 1, max_per_node: int = 2, max_per_storage: int = 2, wait: bool = True,
          timeout: Deadline | float | None = None,
          **options: Unpack[CloneOptions]) -> ProvisionResult | list[ProvisionResult]:
    """Make VM `name` from `template` (VMID, name or tag), or with `count` that many VMs named by the
    pattern `name` (`web-{n}`, or the prefix `web`), numbered from `name_start` (a number, or `next`:
    after the highest one in use). See the module docstring and `pvectl.provision`.

    One VM: the `ProvisionResult` (`result` created | exists | planned); GuardRefused / UsageError /
    NotFound before anything is written, `ProvisionFailed` (with `.result`) for a step that failed.
    `count`: a list in name order; one VM's failure is in its own result's `error`.
    Ctrl-C: `ProvisionInterrupted` (a KeyboardInterrupt) with every VM made or in flight."""
    from ..provision import provision, provision_many, specs_for_count

    if not wait:
        raise UsageError("vm clone waits for the clone task to configure the new VM; --no-wait does not apply",
                         hint="bound the whole workflow with --timeout S instead")
    spec = clone_spec(template, name or "x", **options)
    deadline = session.deadline(timeout)

    def on_event(ev: ProvisionEvent) -> None:
        session.emit("clone", **ev.to_dict())

    writer = session.writer()
    if count is None:
        if not name:
            raise UsageError("give the NAME of the new VM (or --count N --name-pattern PATTERN)")
        res = provision(session, spec, deadline=deadline, writer=writer, on_event=on_event)
        if writer.dry_run:
            res.planned = writer.planned_writes()
        return res
    if count < 1:
        raise UsageError("--count must be at least 1")
    pattern = name_pattern(name)
    specs = specs_for_count(spec, pattern, count, first_index(session, pattern, name_start))
    results = provision_many(session, specs, deadline=deadline, writer=writer, max_per_node=max_per_node,
                             max_per_storage=max_per_storage, on_event=on_event)
    if writer.dry_run:
        by_vm = _by_vm(writer.planned_writes())      # one pass: 16,000 VMs x 16,000 writes otherwise
        for r in results:
            r.planned = by_vm.get(r.vmid, []) if r.vmid is not None else []
    return results


def _by_vm(planned: list[PlannedWrite]) -> dict[int, list[PlannedWrite]]:
    """The planned writes of a bulk run by the VM each acts on: its clone (`newid`), or a later step
    on its own path (`/nodes/N/qemu/VMID/...`), in the order they were planned."""
    out: dict[int, list[PlannedWrite]] = {}
    for w in planned:
        newid = w.params.get("newid")
        vmid: int | None = int(newid) if newid is not None else _path_vmid(w.path)
        if vmid is not None:
            out.setdefault(vmid, []).append(w)
    return out


def _path_vmid(path: str) -> int | None:
    head, sep, rest = path.partition("/qemu/")
    vmid = rest.split("/", 1)[0]
    return int(vmid) if sep and vmid.isdecimal() and vmid.isascii() else None

