"""Validation of cluster-config.yaml over PyYAML's node tree (line numbers come from the nodes).

Imported only when a config is parsed (a cold load, `loads_config`), and it imports `yaml`: a warm
load takes the validated document from the cache and never imports this module or `yaml`. `validate()` returns that document
(JSON-able, the shape `configdoc.doc_ok` checks); every problem is a one-line `ConfigError`
"<file>:<line>: <key>: <what is wrong / expected>".
"""

from __future__ import annotations

import os

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .configdoc import DEFAULT_PORT, VMID_MAX, VMID_MIN
from .configdoc import did_you_mean as _did_you_mean
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    # a mapping's entries by key: (key node, value node)
    Entries = dict[str, tuple[Node, Node]]

__all__ = ["validate"]


class _V:
    """Validator state: the file name for messages, the directory for relative paths."""

    def __init__(self, file: str, base_dir: str) -> None:
        self.file = file
        self.base_dir = base_dir
        self.ctor = yaml.constructor.SafeConstructor()

    # -- messages
    def fail(self, node: Node | None, key: str, what: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(f"{self.file}:{line}: {key}: {what}", file=self.file, line=line, key=key)

    def line(self, node: Node) -> int:
        return int(node.start_mark.line) + 1

    def describe(self, node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        if not node.tag.startswith("tag:yaml.org,2002:"):
            return f"a value tagged {node.tag[:40]!r}"
        tag = node.tag.rsplit(":", 1)[-1]
        kind = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
                "null": "nothing (null)", "timestamp": "a date", "binary": "a binary value"}.get(tag, f"a {tag}")
        if tag == "null":
            return kind
        shown = node.value if len(node.value) <= 60 else node.value[:57] + "..."
        return f"{kind} ({shown!r})"

    # -- structure
    def mapping(self, node: Node, key: str, allowed: tuple[str, ...]) -> Entries:
        """{name: (key_node, value_node)} of a mapping node, with unknown/duplicate keys refused."""
        if not isinstance(node, MappingNode):
            self.fail(node, key or "(top level)", f"expected a mapping, got {self.describe(node)}")
        self.ctor.flatten_mapping(node)  # YAML merge keys (<<)
        out: Entries = {}
        prefix = f"{key}." if key else ""
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode) or knode.tag.rsplit(":", 1)[-1] != "str":
                self.fail(knode, key or "(top level)", f"keys must be strings, got {self.describe(knode)}")
            name = str(knode.value)
            if name in out:
                self.fail(knode, prefix + name, f"duplicate key (first at line {self.line(out[name][0])})")
            if name not in allowed:
                hint = _did_you_mean(name, allowed) or f" (expected one of: {', '.join(allowed)})"
                self.fail(knode, prefix + name, f"unknown key{hint}")
            out[name] = (knode, vnode)
        return out

    def section(self, m: Entries, name: str, key: str, allowed: tuple[str, ...]) -> Entries:
        """An optional sub-mapping; absent or null -> {}."""
        if name not in m or self.is_null(m[name][1]):
            return {}
        return self.mapping(m[name][1], key, allowed)

    def is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag.endswith(":null")

    def scalar(self, node: Node, key: str, expected: str) -> object:
        """The Python value of a scalar whose tag was checked; an explicit tag with a value it cannot
        hold (`!!int abc`, `!!bool maybe`) is a config error too."""
        try:
            return self.ctor.construct_object(node, deep=True)
        except Exception:  # noqa: BLE001 - PyYAML raises ValueError, KeyError, ConstructorError...
            self.fail(node, key, f"expected {expected}, got {self.describe(node)}")

    def string(self, m: Entries, name: str, key: str, *, default: str | None = None) -> str | None:
        """An optional string (`default` when absent or null)."""
        if name not in m or self.is_null(m[name][1]):
            return default
        node = m[name][1]
        if not isinstance(node, ScalarNode) or not node.tag.endswith(":str"):
            self.fail(node, key, f"expected a string, got {self.describe(node)}")
        value = str(node.value).strip()
        if not value:
            self.fail(node, key, "expected a non-empty string")
        return value

    def required(self, m: Entries, name: str, key: str, *, parent: Node) -> str:
        """A string that must be there (the error points at its key, or at `parent` when absent)."""
        value = self.string(m, name, key)
        if value is None:
            self.fail(m[name][0] if name in m else parent, key, "missing required key (expected a string)")
        return value

    def path(self, m: Entries, name: str, key: str) -> str | None:
        v = self.string(m, name, key)
        if v is None:
            return None
        v = os.path.expanduser(v)
        return os.path.normpath(os.path.join(self.base_dir, v))

    def integer(self, m: Entries, name: str, key: str, lo: int, hi: int, default: int | None) -> int | None:
        if name not in m:
            return default
        node = m[name][1]
        if not isinstance(node, ScalarNode) or not node.tag.endswith(":int"):
            self.fail(node, key, f"expected an integer from {lo} to {hi}, got {self.describe(node)}")
        v = self.scalar(node, key, f"an integer from {lo} to {hi}")
        if not isinstance(v, int) or not lo <= v <= hi:
            self.fail(node, key, f"expected an integer from {lo} to {hi}, got {v}")
        return v

    def boolean(self, m: Entries, name: str, key: str, default: bool) -> bool:
        if name not in m:
            return default
        node = m[name][1]
        if not isinstance(node, ScalarNode) or not node.tag.endswith(":bool"):
            self.fail(node, key, f"expected true or false, got {self.describe(node)}")
        return bool(self.scalar(node, key, "true or false"))


_TOP = ("cluster", "credentials", "tls", "defaults", "tags", "vmid_ranges", "cloudinit")
_MULTI_TOP = ("clusters", "default_cluster")
_NODE_NAME = r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$"  # pve-common `pve-node`
_TOKEN_ID = r"^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$"  # USER@REALM!TOKENNAME
_RANGE = r"^\s*([0-9]+)\s*-\s*([0-9]+)\s*$"  # ASCII digits only: `\d` matches other scripts' digits too


def validate(data: bytes, file: str, base_dir: str, abspath: str | None) -> dict[str, Any]:
    """Parse and validate the whole file; the JSON-able result is what the cache stores."""
    v = _V(file, base_dir)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(data, Loader=loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (e.problem, f"({e.context})" if e.context else None) if x)
        raise ConfigError(f"{file}:{line}: YAML syntax error: {what}", file=file, line=line) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}:1: YAML error: {str(e).splitlines()[0]}", file=file, line=1) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}:1: not UTF-8 text ({e.reason})", file=file, line=1) from None
    if root is None or v.is_null(root):
        raise ConfigError(f"{file}:1: the file is empty; expected a mapping with a 'cluster:' section",
                          file=file, line=1)
    if not isinstance(root, MappingNode):
        v.fail(root, "(top level)", f"expected a mapping with a 'cluster:' section, got {v.describe(root)}")

    keys = [k.value for k, _ in root.value if isinstance(k, ScalarNode)]
    if "clusters" in keys:
        for k, _ in root.value:
            if isinstance(k, ScalarNode) and k.value in _TOP:
                v.fail(k, k.value, "cannot be combined with 'clusters:'; move it into each clusters entry")
        m = v.mapping(root, "", _MULTI_TOP)
        knode, cnode = m["clusters"]
        if not isinstance(cnode, MappingNode):
            v.fail(cnode if not v.is_null(cnode) else knode, "clusters",
                   f"expected a mapping of cluster name -> {{cluster: ...}}, got {v.describe(cnode)}")
        entries = v.mapping(cnode, "clusters", tuple(k.value for k, _ in cnode.value
                                                     if isinstance(k, ScalarNode)))
        if not entries:
            v.fail(cnode, "clusters", "expected at least one cluster")
        blocks = {}
        for cname, (ck, cv) in entries.items():
            blocks[cname] = _block(v, cv, f"clusters.{cname}.", default_name=cname, parent=ck)
            blocks[cname]["config"]["path"] = abspath
        default = v.string(m, "default_cluster", "default_cluster")
        if default is not None and default not in blocks:
            v.fail(m["default_cluster"][1], "default_cluster",
                   f"no cluster '{default}'{_did_you_mean(default, blocks)}; defined: {', '.join(blocks)}")
        return {"multi": True, "blocks": blocks, "default_cluster": default,
                "clusters_line": v.line(knode), "path": abspath}
    block = _block(v, root, "", default_name=None, parent=root)
    line = v.line(root)
    for k, _ in root.value:
        if k.value == "cluster":
            line = v.line(k)
    block["config"]["path"] = abspath
    return {"multi": False, "blocks": {block["config"]["name"]: block}, "default_cluster": None,
            "clusters_line": line, "path": abspath}


# a DNS name: labels of letters, digits, '-' (not at either end) and '_', at most 63 characters each
_HOST_NAME = r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"


def _host(v: _V, node: Node, key: str, text: str) -> str:
    """A node's `host`: a DNS name, an IPv4 address or an IPv6 literal (written bare or in brackets,
    stored bare: `[::1]` -> `::1`). A port written into the host is refused with a pointer to `port:`,
    which is where pvectl (and the certificate check) takes it from."""
    import ipaddress
    import re

    def is_ipv6(s: str) -> bool:
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            return False
        return True

    def port_error(port: str) -> NoReturn:
        v.fail(node, key, f"expected a host name or IP address without a port; put the port in 'port: {port}' "
                          f"(got {text!r})")

    if text.startswith("["):
        inner, closed, rest = text[1:].partition("]")
        if closed and is_ipv6(inner):
            if not rest:
                return inner
            if rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit():
                port_error(rest[1:])
    elif is_ipv6(text):
        return text
    elif text.count(":") == 1:
        name, _, port = text.partition(":")
        if port.isascii() and port.isdigit() and re.match(_HOST_NAME, name):
            port_error(port)
    elif re.match(_HOST_NAME, text):
        return text
    v.fail(node, key, f"expected a host name or IP address (no scheme, path or port), got {text!r}")


def _block(v: _V, node: Node, p: str, *, default_name: str | None, parent: Node) -> dict[str, Any]:
    import re

    m = v.mapping(node, p.rstrip("."), _TOP)

    # cluster
    if "cluster" not in m:
        v.fail(node, f"{p}cluster", "missing required section (expected name: and nodes:)")
    cl = v.mapping(m["cluster"][1], f"{p}cluster", ("name", "nodes"))
    name = (v.required(cl, "name", f"{p}cluster.name", parent=m["cluster"][0]) if default_name is None
            else v.string(cl, "name", f"{p}cluster.name", default=default_name))
    if "nodes" not in cl or v.is_null(cl["nodes"][1]):
        v.fail(cl["nodes"][0] if "nodes" in cl else m["cluster"][0], f"{p}cluster.nodes",
               "missing required key (expected a list of {name, host})")
    nlist = cl["nodes"][1]
    if not isinstance(nlist, SequenceNode):
        v.fail(nlist, f"{p}cluster.nodes", f"expected a list of {{name, host}}, got {v.describe(nlist)}")
    if not nlist.value:
        v.fail(nlist, f"{p}cluster.nodes", "no nodes: expected at least one {name, host}")
    nodes: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, nn in enumerate(nlist.value):
        k = f"{p}cluster.nodes[{i}]"
        nm = v.mapping(nn, k, ("name", "host", "port", "ssh_host", "ssh_port"))
        nname = v.required(nm, "name", f"{k}.name", parent=nn)
        if not re.match(_NODE_NAME, nname):
            v.fail(nm["name"][1], f"{k}.name", f"not a valid node name: {nname!r} (letters, digits, '-')")
        if nname in seen:
            v.fail(nm["name"][1], f"{k}.name", f"duplicate node name '{nname}' (first at line {seen[nname]})")
        seen[nname] = v.line(nm["name"][1])
        host = v.required(nm, "host", f"{k}.host", parent=nn)
        host = _host(v, nm["host"][1], f"{k}.host", host)
        port = v.integer(nm, "port", f"{k}.port", 1, 65535, DEFAULT_PORT)
        nodes.append({"name": nname, "host": host, "port": port,
                      "ssh_host": v.string(nm, "ssh_host", f"{k}.ssh_host"),
                      "ssh_port": v.integer(nm, "ssh_port", f"{k}.ssh_port", 1, 65535, None)})

    # credentials
    cr = v.section(m, "credentials", f"{p}credentials", ("pass_path", "ssh_user", "token_id", "token_file"))
    token_id = v.string(cr, "token_id", f"{p}credentials.token_id")
    if token_id is not None and not re.match(_TOKEN_ID, token_id):
        v.fail(cr["token_id"][1], f"{p}credentials.token_id",
               f"expected an API token id USER@REALM!TOKENNAME (e.g. root@pam!pvectl), got {token_id!r}")
    creds = {"pass_path": v.string(cr, "pass_path", f"{p}credentials.pass_path"),
             "ssh_user": v.string(cr, "ssh_user", f"{p}credentials.ssh_user", default="root"),
             "token_id": token_id,
             "token_file": v.path(cr, "token_file", f"{p}credentials.token_file")}

    # tls
    tl = v.section(m, "tls", f"{p}tls", ("ca_file", "fingerprints", "insecure"))
    ca_file = v.path(tl, "ca_file", f"{p}tls.ca_file")
    insecure = v.boolean(tl, "insecure", f"{p}tls.insecure", False)
    fps: dict[str, str] = {}
    if "fingerprints" in tl and not v.is_null(tl["fingerprints"][1]):
        fm = v.mapping(tl["fingerprints"][1], f"{p}tls.fingerprints", tuple(seen))
        for nname in fm:
            key = f"{p}tls.fingerprints.{nname}"
            raw = v.string(fm, nname, key)
            text = raw or ""
            hexd = text.replace(":", "").upper()
            if not re.match(r"^[0-9A-F]{64}$", hexd) or (":" in text and not re.match(
                    r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}$", text)):
                v.fail(fm[nname][1], key, f"expected a SHA-256 fingerprint (32 hex byte pairs 'AB:CD:…'), "
                                          f"got {raw!r}")
            fps[nname] = ":".join(hexd[i:i + 2] for i in range(0, 64, 2))
    if insecure and (ca_file or fps):
        v.fail(tl["insecure"][1], f"{p}tls.insecure", "true cannot be combined with ca_file or fingerprints")
    if fps and not ca_file:
        missing = [n for n in seen if n not in fps]
        if missing:
            v.fail(tl["fingerprints"][1], f"{p}tls.fingerprints",
                   f"no fingerprint for node {', '.join(missing)} (pin every node, or add tls.ca_file)")

    de = v.section(m, "defaults", f"{p}defaults", ("storage", "network_bridge"))
    ta = v.section(m, "tags", f"{p}tags", ("templates",))
    ci = v.section(m, "cloudinit", f"{p}cloudinit", ("default_user", "ssh_keys_file"))

    # vmid_ranges: "FIRST-LAST" strings; vms and templates must not overlap
    vr = v.section(m, "vmid_ranges", f"{p}vmid_ranges", ("vms", "templates"))
    ranges: dict[str, Any] = {"vms": None, "templates": None}
    for rname in ("vms", "templates"):
        key = f"{p}vmid_ranges.{rname}"
        if rname not in vr or v.is_null(vr[rname][1]):
            continue
        rn = vr[rname][1]
        spec = rn.value if isinstance(rn, ScalarNode) else None
        mm = re.match(_RANGE, spec) if isinstance(spec, str) else None
        if mm is None:
            v.fail(rn, key, f"expected a range FIRST-LAST like '100-899', got {v.describe(rn)}")
        lo, hi = int(mm.group(1)), int(mm.group(2))
        if lo > hi:
            v.fail(rn, key, f"range {lo}-{hi} is empty: FIRST must not exceed LAST")
        if lo < VMID_MIN or hi > VMID_MAX:
            v.fail(rn, key, f"range {lo}-{hi} is outside the valid VMIDs {VMID_MIN}-{VMID_MAX}")
        ranges[rname] = {"start": lo, "end": hi}
    if ranges["vms"] and ranges["templates"]:
        a, b = ranges["vms"], ranges["templates"]
        if a["start"] <= b["end"] and b["start"] <= a["end"]:
            v.fail(vr["templates"][1], f"{p}vmid_ranges.templates",
                   f"{b['start']}-{b['end']} overlaps vmid_ranges.vms {a['start']}-{a['end']}")

    config = {
        "path": None, "name": name, "nodes": nodes, "credentials": creds,
        "tls": {"ca_file": ca_file, "fingerprints": fps, "insecure": insecure},
        "defaults": {"storage": v.string(de, "storage", f"{p}defaults.storage"),
                     "network_bridge": v.string(de, "network_bridge", f"{p}defaults.network_bridge",
                                                default="vmbr0")},
        "tags": {"templates": v.string(ta, "templates", f"{p}tags.templates")},
        "vmid_ranges": ranges,
        "cloudinit": {"default_user": v.string(ci, "default_user", f"{p}cloudinit.default_user"),
                      "ssh_keys_file": v.path(ci, "ssh_keys_file", f"{p}cloudinit.ssh_keys_file")},
        "clusters": [],
    }
    ca_mark = [v.line(tl["ca_file"][1]), f"{p}tls.ca_file"] if ca_file else None
    return {"config": config, "ca_file_mark": ca_mark}
