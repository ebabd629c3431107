"""The tools `pvectl mcp` offers: name, tier, annotations and the Proxmox privileges each needs.

Pure data and pure selection, so the tool list per tier and every annotation are pinned by tests.

Tiers: `read` (the default), `write` (`--allow-writes`), `destructive` (`--allow-destructive`, which
also allows the writes). A tool above the server's tier is not registered at all.

Annotations (MCP `ToolAnnotations`):
- readOnlyHint: the tool sends no write to the cluster.
- destructiveHint: a write that can remove or overwrite state (a VM, its disks, a running guest's
  uptime, config values). Shutdown, start and reboot leave every VM and disk in place.
- idempotentHint: calling again with the same arguments changes nothing more.
- openWorldHint: False everywhere: every tool acts on the configured cluster only.

Privileges come from the API schema's `permissions` of the endpoints each tool calls
(spec/pve-apidata-9.1.json): e.g. DELETE /nodes/{node}/qemu/{vmid} needs VM.Allocate on /vms/{vmid}.
A tool is left out at start-up when the token holds none of a required group's privileges on any path
where that check can pass (`GET /access/permissions` lists the token's effective privileges per path):
`/` for the cluster status, `/nodes/...` for a node's status, `/vms/...` or `/pool/...` for VMs.
"""

from __future__ import annotations

from dataclasses import dataclass

TIERS = ("read", "write", "destructive")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    tier: str
    title: str
    read_only: bool
    destructive: bool
    idempotent: bool
    privileges: tuple[tuple[str, ...], ...] = ()   # every group needs one of its privileges
    open_world: bool = False

    @property
    def acl_scope(self) -> str:
        """Where the privileges are checked: `/` (cluster status), `/nodes` or `/vms`."""
        if self.name == "cluster_status":
            return "/"
        return "/nodes" if self.name == "node_status" else "/vms"


_CONFIG_PRIVS = ("VM.Config.Disk", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
                 "VM.Config.HWType", "VM.Config.Options", "VM.Config.Cloudinit")

TOOLS: tuple[ToolSpec, ...] = (
    # read: GET only
    ToolSpec("cluster_status", "read", "Cluster status and quorum", True, False, True, (("Sys.Audit",),)),
    ToolSpec("node_list", "read", "List nodes", True, False, True),
    ToolSpec("node_status", "read", "Node status", True, False, True, (("Sys.Audit",),)),
    ToolSpec("vm_list", "read", "List VMs", True, False, True, (("VM.Audit",),)),
    ToolSpec("vm_status", "read", "VM status", True, False, True, (("VM.Audit",),)),
    ToolSpec("template_list", "read", "List templates", True, False, True, (("VM.Audit",),)),
    ToolSpec("migration_check", "read", "Check whether a VM can migrate", True, False, True, (("VM.Migrate",),)),
    ToolSpec("task_status", "read", "Task status", True, False, True),
    ToolSpec("task_log", "read", "Task log", True, False, True),
    ToolSpec("task_wait", "read", "Wait for a task", True, False, True),
    ToolSpec("task_diagnose", "read", "Diagnose a hung task or VM", True, False, True, (("VM.Audit",),)),
    ToolSpec("drain_plan", "read", "Plan a node drain", True, False, True, (("VM.Migrate",),)),
    # write: create, configure, power on/off gracefully
    ToolSpec("vm_provision", "write", "Provision VMs from a template", False, False, False,
             (("VM.Clone",), ("VM.Allocate",))),
    ToolSpec("vm_set_config", "write", "Set VM config keys", False, True, True, (_CONFIG_PRIVS,)),
    ToolSpec("vm_start", "write", "Start a VM", False, False, True, (("VM.PowerMgmt",),)),
    ToolSpec("vm_shutdown", "write", "Shut a VM down gracefully", False, False, True, (("VM.PowerMgmt",),)),
    ToolSpec("vm_reboot", "write", "Reboot a VM", False, False, False, (("VM.PowerMgmt",),)),
    ToolSpec("vm_resize", "write", "Grow a VM's disk, CPU or memory", False, False, False,
             (("VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory"),)),
    # destructive: two-phase (preview + plan token + the typed name)
    ToolSpec("vm_stop", "destructive", "Hard-stop a VM", False, True, True, (("VM.PowerMgmt",),)),
    ToolSpec("vm_delete", "destructive", "Delete a VM and its disks", False, True, False, (("VM.Allocate",),)),
    ToolSpec("vm_migrate", "destructive", "Migrate a VM to another node", False, True, False, (("VM.Migrate",),)),
    ToolSpec("node_drain", "destructive", "Drain a node (migrate every VM away)", False, True, False,
             (("VM.Migrate",),)),
)

BY_NAME = {t.name: t for t in TOOLS}


def tier_allows(server_tier: str, tool_tier: str) -> bool:
    return TIERS.index(tool_tier) <= TIERS.index(server_tier)


def missing_privileges(spec: ToolSpec, permissions: dict[str, dict[str, int]] | None) -> list[str]:
    """The privilege groups the token lacks everywhere (None = permissions unknown: nothing missing)."""
    if permissions is None:
        return []
    scope = spec.acl_scope
    # an ACL on `/` covers everything; one on /vms/N or /pool/P covers those VMs (pve-access-control
    # AccessControl.pm::permission: ACLs propagate down the path)
    prefixes = () if scope == "/" else (scope, "/pool") if scope == "/vms" else (scope,)
    held = {priv for path, privs in permissions.items() for priv, on in privs.items()
            if on and (path == "/" or any(path == p or path.startswith(p + "/") for p in prefixes))}
    return [" or ".join(group) for group in spec.privileges if not held.intersection(group)]


def select(tier: str, *, only: list[str] | None = None,
           permissions: dict[str, dict[str, int]] | None = None) -> tuple[list[ToolSpec], list[tuple[str, str]]]:
    """(the tools to register, [(tool, why it is left out)] for the ones named or within the tier but unusable).

    Raises ValueError for an unknown tier or tool name."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    unknown = [n for n in only or () if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown tool(s): {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    chosen: list[ToolSpec] = []
    left_out: list[tuple[str, str]] = []
    for spec in TOOLS:
        if only is not None and spec.name not in only:
            continue
        if not tier_allows(tier, spec.tier):
            if only is not None:
                flag = "--allow-destructive" if spec.tier == "destructive" else "--allow-writes"
                left_out.append((spec.name, f"needs {flag}"))
            continue
        missing = missing_privileges(spec, permissions)
        if missing:
            left_out.append((spec.name, f"the API token lacks {', '.join(missing)}"))
            continue
        chosen.append(spec)
    return chosen, left_out
