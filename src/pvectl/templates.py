"""Templates: found by the template flag, by the `tags.templates` tag, or by the template VMID range.

The seed lists templates with `select(.template == 1)` and notes they "can also be identified by tag
... or by VMID range". Each way can disagree with the others (a VM tagged `template` that was never
converted; a clone of a template inherits its tags: qemu-server clone_vm copies `tags`), so every
entry says which rules matched it.
"""

from __future__ import annotations

from .records import Record

TYPE_CHECKING = False

from .errors import NotFound, UsageError
from .vms.reads import VmSummary, list_vms, resolve

if TYPE_CHECKING:
    from typing import Any

    from .session import Session


class TemplateInfo(Record):
    __slots__ = ("vm", "matched_by")

    vm: VmSummary
    matched_by: tuple[str, ...]       # "flag", "tag", "range"

    @property
    def is_template(self) -> bool:
        return self.vm.template

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.vm.to_dict().items()
             if k in {"vmid", "name", "node", "status", "template", "tags", "maxcpu", "maxmem", "maxdisk"}}
        d["matched_by"] = list(self.matched_by)
        return d


def _rules(s: Session) -> tuple[str | None, Any]:
    cfg = s.config
    tag = cfg.tags.templates if cfg.tags else None
    rng = cfg.vmid_ranges.templates if cfg.vmid_ranges else None
    return tag, rng


def template_matches(s: Session, vm: VmSummary) -> tuple[str, ...]:
    """Which rules make `vm` a template: "flag", "tag", "range" (none: not a template)."""
    tag, rng = _rules(s)
    by = []
    if vm.template:
        by.append("flag")
    elif vm.lock == "clone":
        # a clone in flight carries the template's tags but is not a template (pve-semantics §4.3)
        return ()
    if tag and tag in vm.tags:
        by.append("tag")
    if rng is not None and rng.contains(vm.vmid):
        by.append("range")
    return tuple(by)


def list_templates(s: Session, *, by: str | None = None) -> list[TemplateInfo]:
    """Templates by any rule (default), or only by `flag`, `tag` or `range`."""
    if by not in (None, "flag", "tag", "range"):
        raise UsageError(f"unknown template rule '{by}': use flag, tag or range")
    out = []
    for vm in list_vms(s):
        matched = template_matches(s, vm)
        if matched and (by is None or by in matched):
            out.append(TemplateInfo(vm=vm, matched_by=matched))
    return out


def resolve_template(s: Session, ref: str | int) -> VmSummary:
    """A template by VMID, unique name, or tag (a tag must select exactly one template)."""
    try:
        vm = resolve(s, ref)
    except NotFound:
        text = str(ref)
        tagged = [t.vm for t in list_templates(s) if t.vm.template and text in t.vm.tags]
        if len(tagged) == 1:
            return tagged[0]
        if len(tagged) > 1:
            listed = ", ".join(f"{v.vmid} ({v.name})" for v in tagged)
            raise UsageError(f"the tag '{text}' matches {len(tagged)} templates ({listed}): give a VMID or name")
        raise NotFound(f"no template with VMID, name or tag '{text}'",
                       hint="list the templates with: pvectl template list") from None
    if not vm.template:
        raise UsageError(f"VM {vm.vmid} ({vm.name}) is not a template",
                         hint="convert it with `qm template` first, or pick one from: pvectl template list")
    return vm


class TemplatesApi:
    def __init__(self, session: Session) -> None:
        self._s = session

    def matches(self, vm: VmSummary) -> tuple[str, ...]:
        return template_matches(self._s, vm)

    def list(self, *, by: str | None = None) -> list[TemplateInfo]:
        """Templates by any rule (default), or only by `flag`, `tag` or `range`."""
        return list_templates(self._s, by=by)

    def resolve(self, ref: str | int) -> VmSummary:
        """A template by VMID, unique name, or tag (a tag must select exactly one template)."""
        return resolve_template(self._s, ref)
