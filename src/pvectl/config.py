"""cluster-config.yaml -> a frozen, typed `Config`.

The seed's keys are kept exactly (`cluster.name`, `cluster.nodes[].name/host`, `credentials.pass_path`,
`credentials.ssh_user`, `defaults.storage`, `defaults.network_bridge`, `tags.templates`,
`vmid_ranges.vms/templates`, `cloudinit.default_user`); ours sit beside them (DESIGN §2)::

    cluster:
      name: lab
      nodes:
        - {name: pve01, host: pve01.lab.example.com, port: 8006}   # port defaults to 8006
    credentials: {pass_path: proxmox/api-token, ssh_user: root,
                  token_id: root@pam!pvectl, token_file: token}     # token_* are alternatives to pass
    tls: {ca_file: pve-root-ca.pem}      # or fingerprints: {pve01: "AB:CD:…"} or insecure: true
    defaults: {storage: local-lvm, network_bridge: vmbr0}
    tags: {templates: template}
    vmid_ranges: {vms: 100-899, templates: 9000-9999}
    cloudinit: {default_user: ubuntu, ssh_keys_file: ~/.ssh/id_ed25519.pub}

Several clusters: a top-level `clusters:` mapping name -> the block above (`default_cluster:` optional);
`cluster.name` inside a block defaults to its key.

Lookup: explicit path > $PVECTL_CONFIG > ./cluster-config.yaml > ${XDG_CONFIG_HOME:-~/.config}/pvectl/
cluster-config.yaml. `~` is expanded; relative `ca_file`, `token_file` and `ssh_keys_file` are relative to
the config file's directory.

Every problem is a one-line `ConfigError` "<file>:<line>: <key>: <what is wrong / expected>" (line numbers
come from PyYAML's composed node tree).

Start-up: importing PyYAML costs ~20 ms, so the validated result is cached as JSON in
${XDG_CACHE_HOME:-~/.cache}/pvectl/, keyed by the file's absolute path, mtime_ns and size (the config
holds no secret). A warm load imports neither `yaml` nor `dataclasses`; the records below are small
frozen classes with `__slots__` for the same reason (`dataclasses` pulls in `inspect`).
"""

from __future__ import annotations

import os

from pvectl.errors import ConfigError
from pvectl.records import Record as _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping, NoReturn

__all__ = [
    "Config", "Node", "Credentials", "Tls", "Defaults", "Tags", "VmidRange", "VmidRanges", "CloudInit",
    "load_config", "loads_config", "find_config", "DEFAULT_PORT", "CONFIG_NAME",
]

DEFAULT_PORT = 8006
CONFIG_NAME = "cluster-config.yaml"
_CACHE_VERSION = 1
VMID_MIN, VMID_MAX = 100, 999_999_999  # pve-common JSONSchema `pve-vmid`


# --------------------------------------------------------------------------------------------------
# Frozen records


class Node(_Record):
    """One cluster node. `host` is what pvectl connects to (and checks the certificate against)."""

    __slots__ = ("name", "host", "port", "ssh_host", "ssh_port")
    _defaults = {"port": DEFAULT_PORT, "ssh_host": None, "ssh_port": None}
    name: str
    host: str
    port: int
    ssh_host: str | None     # where `ssh` goes (task diagnose); default: `host`
    ssh_port: int | None     # default: the ssh configuration's

    @property
    def address(self) -> str:
        """`host:port` (IPv6 literals in brackets), for messages."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.address}/api2/json"


class VmidRange(_Record):
    """An inclusive VMID range written `FIRST-LAST`, e.g. `100-899`."""

    __slots__ = ("start", "end")
    start: int
    end: int

    def contains(self, vmid: int | str) -> bool:
        try:
            v = int(vmid)
        except (TypeError, ValueError):
            return False
        return self.start <= v <= self.end

    __contains__ = contains

    def overlaps(self, other: VmidRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.end + 1))

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class VmidRanges(_Record):
    __slots__ = ("vms", "templates")
    _defaults = {"vms": None, "templates": None}
    vms: VmidRange | None
    templates: VmidRange | None


class Credentials(_Record):
    """Where the API token comes from (credentials.py reads it). Holds no secret itself."""

    __slots__ = ("pass_path", "ssh_user", "token_id", "token_file")
    _defaults = {"pass_path": None, "ssh_user": "root", "token_id": None, "token_file": None}
    pass_path: str | None
    ssh_user: str
    token_id: str | None
    token_file: str | None  # absolute


class Tls(_Record):
    """How node certificates are checked: pinned SHA-256 per node, else `ca_file`, else (insecure) not
    at all, else the system CA store."""

    __slots__ = ("ca_file", "fingerprints", "insecure")
    _defaults = {"ca_file": None, "fingerprints": {}, "insecure": False}
    ca_file: str | None  # absolute
    fingerprints: dict[str, str]  # node -> "AB:CD:..." (upper case, 32 pairs)
    insecure: bool

    def fingerprint(self, node: str) -> str | None:
        return self.fingerprints.get(node)

    def mode(self, node: str) -> str:
        """`pin`, `ca_file`, `insecure` or `system` for this node."""
        if node in self.fingerprints:
            return "pin"
        if self.ca_file:
            return "ca_file"
        if self.insecure:
            return "insecure"
        return "system"


class Defaults(_Record):
    __slots__ = ("storage", "network_bridge")
    _defaults = {"storage": None, "network_bridge": "vmbr0"}
    storage: str | None
    network_bridge: str


class Tags(_Record):
    __slots__ = ("templates",)
    _defaults = {"templates": None}
    templates: str | None


class CloudInit(_Record):
    __slots__ = ("default_user", "ssh_keys_file")
    _defaults = {"default_user": None, "ssh_keys_file": None}
    default_user: str | None
    ssh_keys_file: str | None  # absolute


class Config(_Record):
    """One cluster's configuration. `nodes` keeps the file's order (= preference order)."""

    __slots__ = ("path", "name", "nodes", "credentials", "tls", "defaults", "tags", "vmid_ranges",
                 "cloudinit", "clusters")
    _defaults = {"path": None, "credentials": Credentials(), "tls": Tls(), "defaults": Defaults(),
                 "tags": Tags(), "vmid_ranges": VmidRanges(), "cloudinit": CloudInit(), "clusters": ()}
    path: str | None  # absolute path of the file it came from
    name: str
    nodes: tuple[Node, ...]
    credentials: Credentials
    tls: Tls
    defaults: Defaults
    tags: Tags
    vmid_ranges: VmidRanges
    cloudinit: CloudInit
    clusters: tuple[str, ...]  # every cluster the file defines (one entry for a single-cluster file)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> Node:
        """The node called `name`; ConfigError (exit 2) naming the known ones otherwise."""
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(self.node_names)
        raise ConfigError(f"unknown node '{name}' in cluster '{self.name}'{_did_you_mean(name, self.node_names)}"
                          f"; nodes: {known}", file=self.path, key="cluster.nodes")

    def has_node(self, name: str) -> bool:
        return any(n.name == name for n in self.nodes)


def _from_dict(d: dict[str, Any]) -> Config:
    vr = d["vmid_ranges"]
    return Config(
        path=d["path"], name=d["name"],
        nodes=tuple(Node(**n) for n in d["nodes"]),
        credentials=Credentials(**d["credentials"]),
        tls=Tls(**d["tls"]),
        defaults=Defaults(**d["defaults"]),
        tags=Tags(**d["tags"]),
        vmid_ranges=VmidRanges(vms=VmidRange(**vr["vms"]) if vr["vms"] else None,
                               templates=VmidRange(**vr["templates"]) if vr["templates"] else None),
        cloudinit=CloudInit(**d["cloudinit"]),
        clusters=tuple(d["clusters"]),
    )


def _did_you_mean(word: str, choices: Any) -> str:
    import difflib

    m = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{m[0]}'?)" if m else ""


# --------------------------------------------------------------------------------------------------
# Lookup


def _xdg(var: str, fallback: str, env: Mapping[str, str]) -> str:
    v = env.get(var)
    return v if v and os.path.isabs(v) else os.path.join(os.path.expanduser("~"), fallback)


def find_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The config file to use: explicit path > $PVECTL_CONFIG > ./cluster-config.yaml >
    ${XDG_CONFIG_HOME:-~/.config}/pvectl/cluster-config.yaml. ConfigError when none exists."""
    env = os.environ if env is None else env
    if path is not None:
        p = os.path.expanduser(os.fspath(path))
        if not os.path.exists(p):
            raise ConfigError(f"{p}: config file not found", file=p,
                              hint="check the --config path")
        return p
    if env.get("PVECTL_CONFIG"):
        p = os.path.expanduser(env["PVECTL_CONFIG"])
        if not os.path.exists(p):
            raise ConfigError(f"{p}: config file not found ($PVECTL_CONFIG)", file=p,
                              hint="fix or unset $PVECTL_CONFIG")
        return p
    tried = [CONFIG_NAME, os.path.join(_xdg("XDG_CONFIG_HOME", ".config", env), "pvectl", CONFIG_NAME)]
    for p in tried:
        if os.path.exists(p):
            return p
    raise ConfigError(f"no {CONFIG_NAME} found (tried ./{tried[0]}, {tried[1]})",
                      hint="pass --config FILE or set $PVECTL_CONFIG (pvectl sim serve writes one)")


def load_config(path: str | os.PathLike[str] | None = None, *, cluster: str | None = None,
                cache: bool = True, env: Mapping[str, str] | None = None) -> Config:
    """Find, read, validate and return one cluster's Config.

    `cluster` (or $PVECTL_CLUSTER, or `default_cluster:`) picks a block of a `clusters:` file.
    Raises ConfigError only.
    """
    env = os.environ if env is None else env
    file = find_config(path, env=env)
    try:
        st = os.stat(file)
        abspath = os.path.abspath(file)
    except OSError as e:
        raise ConfigError(f"{file}: cannot read config file: {e.strerror}", file=file) from None
    if cluster is None:
        cluster = env.get("PVECTL_CLUSTER") or None

    doc = _cache_read(abspath, st, env) if cache else None
    if doc is None:
        try:
            with open(file, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise ConfigError(f"{file}: cannot read config file: {e.strerror}", file=file) from None
        doc = _validate(data, file, os.path.dirname(abspath), abspath)
        if cache:
            _cache_write(abspath, st, env, doc)
    return _select(doc, file, cluster)


def loads_config(text: str | bytes, *, file: str = "<string>", base_dir: str | None = None,
                 cluster: str | None = None) -> Config:
    """Validate config text (no lookup, no cache). Relative paths resolve against `base_dir` (cwd)."""
    data = text.encode() if isinstance(text, str) else text
    base = os.path.abspath(base_dir or os.getcwd())
    return _select(_validate(data, file, base, None), file, cluster)


# --------------------------------------------------------------------------------------------------
# Cache


def _cache_file(abspath: str, env: Mapping[str, str]) -> str:
    import zlib  # (hashlib costs ~5 ms of start-up; the entry records its path, so a collision only misses)

    raw = f"{_CACHE_VERSION}\0{abspath}\0{os.path.expanduser('~')}".encode()
    key = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"
    return os.path.join(_xdg("XDG_CACHE_HOME", ".cache", env), "pvectl", f"config-{key}.json")


def _cache_read(abspath: str, st: os.stat_result, env: Mapping[str, str]) -> dict[str, Any] | None:
    try:
        with open(_cache_file(abspath, env), "rb") as fh:
            raw = fh.read()
        import json

        obj = json.loads(raw)
        if (obj.get("version") == _CACHE_VERSION and obj.get("path") == abspath
                and obj.get("mtime_ns") == st.st_mtime_ns and obj.get("size") == st.st_size):
            return obj["doc"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    return None


def _cache_write(abspath: str, st: os.stat_result, env: Mapping[str, str], doc: dict[str, Any]) -> None:
    import time

    # A file changed again within the filesystem's timestamp granularity could keep mtime and size;
    # do not cache a file modified in the last 2 s (the same rule git uses for its index).
    if time.time() - st.st_mtime < 2.0:
        return
    import json

    target = _cache_file(abspath, env)
    tmp = f"{target}.{os.getpid()}.tmp"  # (tempfile would import shutil, bz2, lzma...)
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": _CACHE_VERSION, "path": abspath, "mtime_ns": st.st_mtime_ns,
                           "size": st.st_size, "doc": doc}, fh)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a cache is an optimisation only


# --------------------------------------------------------------------------------------------------
# Selecting a cluster, and checks that touch the filesystem (done on every load, cached or not)


def _select(doc: dict[str, Any], file: str, cluster: str | None) -> Config:
    blocks: dict[str, Any] = doc["blocks"]
    names = list(blocks)
    if doc["multi"]:
        if cluster is None:
            cluster = doc.get("default_cluster")
        if cluster is None:
            if len(names) == 1:
                cluster = names[0]
            else:
                raise ConfigError(
                    f"{file}:{doc['clusters_line']}: clusters: several clusters defined ({', '.join(names)}); "
                    f"choose one with --cluster NAME, $PVECTL_CLUSTER or default_cluster:",
                    file=file, line=doc["clusters_line"], key="clusters")
        if cluster not in blocks:
            raise ConfigError(
                f"{file}:{doc['clusters_line']}: clusters: no cluster '{cluster}'{_did_you_mean(cluster, names)}; "
                f"defined: {', '.join(names)}", file=file, line=doc["clusters_line"], key="clusters")
        block = blocks[cluster]
    else:
        block = blocks[names[0]]
        if cluster is not None and cluster != block["config"]["name"]:
            raise ConfigError(
                f"{file}:{doc['clusters_line']}: cluster.name: the file defines cluster "
                f"'{block['config']['name']}', not '{cluster}'", file=file, line=doc["clusters_line"],
                key="cluster.name")
    ca = block["config"]["tls"]["ca_file"]
    if ca and not os.path.isfile(ca):
        line, key = block["ca_file_mark"]
        raise ConfigError(f"{file}:{line}: {key}: CA file not found: {ca}", file=file, line=line, key=key,
                          hint="copy /etc/pve/pve-root-ca.pem from a node, or pin tls.fingerprints")
    cfg = dict(block["config"])
    cfg["clusters"] = names
    return _from_dict(cfg)


# --------------------------------------------------------------------------------------------------
# Validation over PyYAML's node tree (imported only here)


class _V:
    """Validator state: the file name for messages, the directory for relative paths."""

    def __init__(self, file: str, base_dir: str) -> None:
        import yaml

        self.yaml = yaml
        self.file = file
        self.base_dir = base_dir
        self.ctor = yaml.constructor.SafeConstructor()

    # -- messages
    def fail(self, node: Any, key: str, what: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(f"{self.file}:{line}: {key}: {what}", file=self.file, line=line, key=key)

    def line(self, node: Any) -> int:
        return node.start_mark.line + 1

    def describe(self, node: Any) -> str:
        y = self.yaml
        if isinstance(node, y.MappingNode):
            return "a mapping"
        if isinstance(node, y.SequenceNode):
            return "a list"
        tag = node.tag.rsplit(":", 1)[-1]
        kind = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
                "null": "nothing (null)", "timestamp": "a date"}.get(tag, tag)
        return f"{kind} ({node.value!r})" if tag not in ("null",) else kind

    # -- structure
    def mapping(self, node: Any, key: str, allowed: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
        """{name: (key_node, value_node)} of a mapping node, with unknown/duplicate keys refused."""
        y = self.yaml
        if not isinstance(node, y.MappingNode):
            self.fail(node, key or "(top level)", f"expected a mapping, got {self.describe(node)}")
        self.ctor.flatten_mapping(node)  # YAML merge keys (<<)
        out: dict[str, tuple[Any, Any]] = {}
        prefix = f"{key}." if key else ""
        for knode, vnode in node.value:
            if not isinstance(knode, y.ScalarNode) or knode.tag.rsplit(":", 1)[-1] != "str":
                self.fail(knode, key or "(top level)", f"keys must be strings, got {self.describe(knode)}")
            name = knode.value
            if name in out:
                self.fail(knode, prefix + name, f"duplicate key (first at line {self.line(out[name][0])})")
            if name not in allowed:
                hint = _did_you_mean(name, allowed) or f" (expected one of: {', '.join(allowed)})"
                self.fail(knode, prefix + name, f"unknown key{hint}")
            out[name] = (knode, vnode)
        return out

    def section(self, m: dict[str, tuple[Any, Any]], name: str, key: str,
                allowed: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
        """An optional sub-mapping; absent or null -> {}."""
        if name not in m or self.is_null(m[name][1]):
            return {}
        return self.mapping(m[name][1], key, allowed)

    def is_null(self, node: Any) -> bool:
        return isinstance(node, self.yaml.ScalarNode) and node.tag.endswith(":null")

    def scalar(self, node: Any) -> Any:
        return self.ctor.construct_object(node, deep=True)

    def string(self, m: dict[str, tuple[Any, Any]], name: str, key: str, *, required: bool = False,
               parent: Any = None, default: Any = None) -> Any:
        if name not in m or self.is_null(m[name][1]):
            if required:
                self.fail(m[name][0] if name in m else parent, key, "missing required key (expected a string)")
            return default
        node = m[name][1]
        if not isinstance(node, self.yaml.ScalarNode) or not node.tag.endswith(":str"):
            self.fail(node, key, f"expected a string, got {self.describe(node)}")
        value = node.value.strip()
        if not value:
            self.fail(node, key, "expected a non-empty string")
        return value

    def path(self, m: dict[str, tuple[Any, Any]], name: str, key: str) -> str | None:
        v = self.string(m, name, key)
        if v is None:
            return None
        v = os.path.expanduser(v)
        return os.path.normpath(os.path.join(self.base_dir, v))

    def integer(self, m: dict[str, tuple[Any, Any]], name: str, key: str, lo: int, hi: int,
                default: int) -> int:
        if name not in m:
            return default
        node = m[name][1]
        if not isinstance(node, self.yaml.ScalarNode) or not node.tag.endswith(":int"):
            self.fail(node, key, f"expected an integer from {lo} to {hi}, got {self.describe(node)}")
        v = self.scalar(node)
        if not lo <= v <= hi:
            self.fail(node, key, f"expected an integer from {lo} to {hi}, got {v}")
        return v

    def boolean(self, m: dict[str, tuple[Any, Any]], name: str, key: str, default: bool) -> bool:
        if name not in m:
            return default
        node = m[name][1]
        if not isinstance(node, self.yaml.ScalarNode) or not node.tag.endswith(":bool"):
            self.fail(node, key, f"expected true or false, got {self.describe(node)}")
        return bool(self.scalar(node))


_TOP = ("cluster", "credentials", "tls", "defaults", "tags", "vmid_ranges", "cloudinit")
_MULTI_TOP = ("clusters", "default_cluster")
_NODE_NAME = r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$"  # pve-common `pve-node`
_TOKEN_ID = r"^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$"  # USER@REALM!TOKENNAME
_RANGE = r"^\s*(\d+)\s*-\s*(\d+)\s*$"


def _validate(data: bytes, file: str, base_dir: str, abspath: str | None) -> dict[str, Any]:
    """Parse and validate the whole file; the JSON-able result is what the cache stores."""
    v = _V(file, base_dir)
    y = v.yaml
    loader = getattr(y, "CSafeLoader", y.SafeLoader)
    try:
        root = y.compose(data, Loader=loader)
    except y.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (e.problem, f"({e.context})" if e.context else None) if x)
        raise ConfigError(f"{file}:{line}: YAML syntax error: {what}", file=file, line=line) from None
    except y.YAMLError as e:
        raise ConfigError(f"{file}:1: YAML error: {str(e).splitlines()[0]}", file=file, line=1) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}:1: not UTF-8 text ({e.reason})", file=file, line=1) from None
    if root is None or v.is_null(root):
        raise ConfigError(f"{file}:1: the file is empty; expected a mapping with a 'cluster:' section",
                          file=file, line=1)
    if not isinstance(root, y.MappingNode):
        v.fail(root, "(top level)", f"expected a mapping with a 'cluster:' section, got {v.describe(root)}")

    keys = [k.value for k, _ in root.value if isinstance(k, y.ScalarNode)]
    if "clusters" in keys:
        for k, _ in root.value:
            if isinstance(k, y.ScalarNode) and k.value in _TOP:
                v.fail(k, k.value, "cannot be combined with 'clusters:'; move it into each clusters entry")
        m = v.mapping(root, "", _MULTI_TOP)
        knode, cnode = m["clusters"]
        entries = v.mapping(cnode, "clusters", tuple(k.value for k, _ in getattr(cnode, "value", ())
                                                     if isinstance(k, y.ScalarNode)))
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


def _block(v: _V, node: Any, p: str, *, default_name: str | None, parent: Any) -> dict[str, Any]:
    import re

    m = v.mapping(node, p.rstrip("."), _TOP)
    y = v.yaml

    # cluster
    if "cluster" not in m:
        v.fail(node, f"{p}cluster", "missing required section (expected name: and nodes:)")
    cl = v.mapping(m["cluster"][1], f"{p}cluster", ("name", "nodes"))
    name = v.string(cl, "name", f"{p}cluster.name", required=default_name is None,
                    parent=m["cluster"][0], default=default_name)
    if "nodes" not in cl or v.is_null(cl["nodes"][1]):
        v.fail(cl["nodes"][0] if "nodes" in cl else m["cluster"][0], f"{p}cluster.nodes",
               "missing required key (expected a list of {name, host})")
    nlist = cl["nodes"][1]
    if not isinstance(nlist, y.SequenceNode):
        v.fail(nlist, f"{p}cluster.nodes", f"expected a list of {{name, host}}, got {v.describe(nlist)}")
    if not nlist.value:
        v.fail(nlist, f"{p}cluster.nodes", "no nodes: expected at least one {name, host}")
    nodes: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, nn in enumerate(nlist.value):
        k = f"{p}cluster.nodes[{i}]"
        nm = v.mapping(nn, k, ("name", "host", "port", "ssh_host", "ssh_port"))
        nname = v.string(nm, "name", f"{k}.name", required=True, parent=nn)
        if not re.match(_NODE_NAME, nname):
            v.fail(nm["name"][1], f"{k}.name", f"not a valid node name: {nname!r} (letters, digits, '-')")
        if nname in seen:
            v.fail(nm["name"][1], f"{k}.name", f"duplicate node name '{nname}' (first at line {seen[nname]})")
        seen[nname] = v.line(nm["name"][1])
        host = v.string(nm, "host", f"{k}.host", required=True, parent=nn)
        if "://" in host or "/" in host or " " in host:
            v.fail(nm["host"][1], f"{k}.host",
                   f"expected a host name or IP address (no scheme, path or port), got {host!r}")
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
            hexd = raw.replace(":", "").upper() if raw else ""
            if not re.match(r"^[0-9A-F]{64}$", hexd) or (":" in raw and not re.match(
                    r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}$", raw)):
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
        text = rn.value if isinstance(rn, y.ScalarNode) else None
        mm = re.match(_RANGE, text) if isinstance(text, str) else None
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
