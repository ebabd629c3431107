"""Every safety rule in one place (DESIGN §5), each a pure function of observed state.

The CLI, the library and the MCP server call the same functions on state read just before the
write. A refusal raises `GuardRefused` (exit 3) saying why and what would make it allowed. Proxmox
enforces some of these itself (running and protected VMs cannot be destroyed: pve-semantics §6);
checking them here first gives a clear answer before anything is sent, and the rest (templates,
locks, VMID ranges, shrinking) Proxmox would not stop at all or only inside a task.
"""

from __future__ import annotations

from .errors import GuardRefused
from .units import parse_disk_size as parse_disk_size  # (re-exported) the size grammar lives in units.py

TYPE_CHECKING = False  # `typing` costs start-up time; annotations are strings (PEP 563)
if TYPE_CHECKING:
    from typing import Any

    from .config import VmidRange


def require_yes(yes: bool, action: str, what: str) -> None:
    if not yes:
        raise GuardRefused(f"{action} {what} needs confirmation", "add --yes (or confirm interactively)")


def check_delete(*, vmid: int, name: str, status: str, config: dict[str, Any], vm_range: VmidRange | None,
                 template_range: VmidRange | None, allow_template: bool, yes: bool) -> None:
    """Delete: refuse a running VM, a template unless allowed, `protection: 1`, a locked VM, a VMID
    outside the configured ranges; always needs confirmation."""
    what = f"VM {vmid} ({name})"
    if status not in ("stopped",):
        raise GuardRefused(f"{what} is {status}: Proxmox refuses to destroy a running VM",
                           f"shut it down first: pvectl vm shutdown {vmid}")
    if int(config.get("protection", 0) or 0):
        raise GuardRefused(f"{what} has protection enabled",
                           f"turn it off first if you mean it: pvectl vm set {vmid} protection=0")
    lock = config.get("lock")
    if lock:
        raise GuardRefused(f"{what} is locked ({lock}): a task is using it",
                           "wait for the task (pvectl task list --vm VMID) or diagnose it (pvectl task diagnose VMID)")
    is_template = bool(int(config.get("template", 0) or 0))
    if is_template and not allow_template:
        raise GuardRefused(f"{what} is a template", "add --allow-template to delete a template")
    in_vms = vm_range is not None and vm_range.contains(vmid)
    in_templates = template_range is not None and template_range.contains(vmid)
    if not (in_vms or (is_template and in_templates)):
        ranges = ", ".join(f"{label} {r}" for label, r in (("vms", vm_range), ("templates", template_range)) if r)
        raise GuardRefused(f"{what} is outside the VMID ranges this config manages ({ranges or 'none set'})",
                           "only VMs in vmid_ranges are deleted; change vmid_ranges if this VM is yours")
    require_yes(yes, "deleting", what)


def check_disk_resize(*, vmid: int, disk: str, current: int | None, size: str) -> int:
    """Grow only: returns the new size in bytes; refuses a shrink before anything is sent
    (Proxmox fails it only inside the task: `shrinking disks is not supported`)."""
    relative, amount = parse_disk_size(size)
    if current is None:
        raise GuardRefused(f"VM {vmid} has no disk '{disk}'", "see its disks with: pvectl vm status VM -o json")
    new = current + amount if relative else amount
    if new < current:
        raise GuardRefused(f"disk {disk} of VM {vmid} is {current / 1024**3:.1f} GiB; {size} would shrink it "
                           "and Proxmox cannot shrink disks", "give a larger size, or +N to grow by N")
    return new


def check_running_change(*, vmid: int, running: bool, allow_running: bool, keys: list[str]) -> None:
    if running and not allow_running:
        raise GuardRefused(f"VM {vmid} is running: changing {', '.join(keys)} takes effect only after a "
                           "restart (Proxmox keeps it pending)",
                           "shut it down first, or add --allow-running to apply it as pending (or hot-plugged)")


def check_stop(*, vmid: int, yes: bool) -> None:
    if not yes:
        raise GuardRefused(f"stop is a hard power-off of VM {vmid} (like pulling the plug): data may be lost",
                           "prefer: pvectl vm shutdown VM; or add --yes to stop it anyway")


# ------------------------------------------------------------------------------------------ migrate
_GIB = 1024**3


def migration_reserve(target_total: int) -> int:
    """Memory a migration target must keep free beyond the VM's `maxmem`: the larger of 1 GiB and
    5 % of the target's total memory. Proxmox does not check free memory at all (pve-semantics §9.1);
    a target that runs out OOM-kills its largest process, usually another VM. The host needs room for
    itself besides guest RAM: QEMU's own overhead per VM, the PVE daemons, page tables and the ZFS ARC
    minimum. 1 GiB covers that on a small node; those costs grow with the host's RAM, hence 5 %."""
    return max(_GIB, target_total * 5 // 100)


def migration_mode(*, running: bool, online: bool | None) -> str:
    """`live` for a running VM (unless `online` is False, which Proxmox refuses), else `offline`:
    `online=1` on a stopped VM is migrated offline by Proxmox (pve-semantics §9.2)."""
    return "live" if running and online is not False else "offline"


def _gib(n: int) -> str:
    return f"{n / _GIB:.1f} GiB"


def migration_findings(*, vmid: int, source: str, target: str, members: dict[str, bool], quorate: bool,
                       running: bool, online: bool | None, lock: str | None,
                       precondition: dict[str, Any] | None, with_local_disks: bool, vm_maxmem: int,
                       target_mem: int | None, target_maxmem: int | None) -> list[dict[str, Any]]:
    """Every migration rule (DESIGN §5), evaluated on fresh state. Returns findings
    `{"check", "level": ok|warn|refuse, "reason", "fix"}`; `fix` says what would make it allowed.

    `members` maps each cluster member to its online state (/cluster/status); `precondition` is the
    answer of GET /nodes/{node}/qemu/{vmid}/migrate (None when it could not be asked: the VM is locked,
    or the cluster has no quorum, both of which that endpoint refuses itself: §9.1)."""
    out: list[dict[str, Any]] = []

    def add(check: str, level: str, reason: str, fix: str | None = None) -> None:
        out.append({"check": check, "level": level, "reason": reason, "fix": fix})

    others = [n for n in sorted(members) if n != source]
    online_others = [n for n in others if members[n]]
    target_ok = False
    if target == source:
        add("target", "refuse", f"the VM is already on {source} (Proxmox: target is local node.)",
            f"pick another node: {', '.join(online_others) or 'none is online'}")
    elif target not in members:
        add("target", "refuse", f"no such cluster node '{target}'",
            f"cluster members: {', '.join(sorted(members)) or 'none'}")
    elif not members[target]:
        # Proxmox does not check this: the task starts and fails at its ssh check (§9.2, C9)
        add("target", "refuse", f"target node {target} is offline (not in the cluster membership)",
            f"bring {target} back, or pick an online node: {', '.join(online_others) or 'none'}")
    else:
        target_ok = True
        add("target", "ok", f"{target} is an online cluster member")

    if quorate:
        add("quorum", "ok", "the cluster is quorate")
    else:
        add("quorum", "refuse", "the cluster has no quorum (Proxmox: cluster not ready - no quorum?)",
            "restore quorum first (pvectl cluster status)")

    if lock:
        add("lock", "refuse", f"the VM is locked ({lock}): a task is using it",
            f"wait for the task (pvectl task list --vm {vmid}); a stale lock is removed with "
            f"`qm unlock {vmid}` on its node")
    else:
        add("lock", "ok", "the VM is not locked")

    mode = migration_mode(running=running, online=online)
    if running and online is False:
        add("mode", "refuse", "the VM is running: an offline migration needs a stopped VM "
            "(Proxmox: can't migrate running VM without --online)",
            f"shut it down first (pvectl vm shutdown {vmid}), or drop --offline to migrate it live")
    elif not running and online:
        add("mode", "warn", "the VM is stopped: it is migrated offline (Proxmox ignores --online then)")
    else:
        add("mode", "ok", "live migration: the VM keeps running" if mode == "live"
            else "offline migration of a stopped VM")

    if precondition is not None:
        _precondition_findings(add, vmid=vmid, target=target if target_ok else None, mode=mode,
                               precondition=precondition, with_local_disks=with_local_disks)

    if target_ok:
        if target_mem is None or target_maxmem is None:
            add("memory", "warn", f"the free memory of {target} is unknown (no node statistics)")
        else:
            free = target_maxmem - target_mem
            reserve = migration_reserve(target_maxmem)
            needed = vm_maxmem + reserve
            reason = (f"{target} has {_gib(free)} free; the VM needs {_gib(vm_maxmem)} plus a "
                      f"{_gib(reserve)} reserve ({_gib(needed)})")
            if free >= needed:
                add("memory", "ok", reason)
            elif mode == "live":
                add("memory", "refuse", reason,
                    f"free memory on {target}, or pick a node with more free memory (pvectl node list)")
            else:
                # a stopped VM does not use the target's memory until it is started there
                add("memory", "warn", reason + ": not enough to start it there")
    return out


def _precondition_findings(add: Any, *, vmid: int, target: str | None, mode: str, precondition: dict[str, Any],
                           with_local_disks: bool) -> None:
    allowed = [str(n) for n in precondition.get("allowed_nodes") or []]
    if target is not None:
        blocked = (precondition.get("not_allowed_nodes") or {}).get(target) or {}
        storages = [str(s) for s in blocked.get("unavailable_storages") or []]
        if storages:
            add("storage", "refuse", f"storage {', '.join(storages)} of the VM is not available on {target}",
                f"move the disks to a storage {target} has, or pick a node that has them: "
                f"{', '.join(allowed) or 'none'}")
        resources = blocked.get("unavailable-resources") or []
        if resources:
            add("mapped-resources", "refuse",
                f"mapped devices missing on {target}: {', '.join(map(str, resources))}",
                f"add the device mappings for {target}, or pick another node")
        ha = blocked.get("blocking-ha-resources") or []
        if ha:
            names = ", ".join(str(h.get("sid", h)) if isinstance(h, dict) else str(h) for h in ha)
            add("ha", "refuse", f"HA resources block {target}: {names}", "check the HA rules (ha-manager status)")
        if not (storages or resources or ha):
            add("storage", "ok", f"every storage of the VM is available on {target}")

    # local devices block (C9); Proxmox fails the task with `can't migrate VM which uses local devices`
    local_resources = [str(r) for r in precondition.get("local_resources") or []]
    if local_resources:
        add("local-resources", "refuse", f"the VM uses local devices: {', '.join(local_resources)}",
            f"remove them from its config first: pvectl vm set {vmid} --delete {','.join(local_resources)}")

    disks = precondition.get("local_disks") or []
    cdroms = [d for d in disks if d.get("cdrom") and not d.get("is_cloudinit")]
    movable = [d for d in disks if not (d.get("cdrom") and not d.get("is_cloudinit"))]
    if cdroms:
        add("cdrom", "refuse", "a local CD-ROM image cannot be migrated: " + _disk_list(cdroms),
            "eject it first: pvectl vm set " + str(vmid) + " " +
            " ".join(f"{d.get('drivename', 'ide2')}=none,media=cdrom" for d in cdroms))
    if not movable:
        add("local-disks", "ok", "no local disks: everything is on shared storage")
    elif mode == "live" and not with_local_disks:
        # the task would fail in phase1: `can't live migrate attached local disks without
        # with-local-disks option`, then `migration aborted` (§9.2)
        add("local-disks", "refuse", "a live migration with local disks needs --with-local-disks: "
            + _disk_list(movable),
            "add --with-local-disks (the disks are mirrored while the VM runs), move them to shared "
            f"storage, or shut the VM down (pvectl vm shutdown {vmid}) for an offline migration")
    else:
        how = "mirrored" if mode == "live" else "copied"
        add("local-disks", "ok", f"local disks are {how} to the target: {_disk_list(movable)}")


def _disk_list(disks: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d.get('volid')} ({d['drivename']})" if d.get("drivename") else str(d.get("volid"))
                     for d in disks)


def check_migrate(findings: list[dict[str, Any]], *, what: str, target: str) -> None:
    """Raise `GuardRefused` naming every refusing finding and what would make each allowed."""
    refused = [f for f in findings if f["level"] == "refuse"]
    if refused:
        raise GuardRefused(f"cannot migrate {what} to {target}: " + "; ".join(f["reason"] for f in refused),
                           "; ".join(f["fix"] for f in refused if f.get("fix")) or None)
