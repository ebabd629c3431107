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
come from PyYAML's composed node tree; the validation lives in configcheck.py).

Start-up: importing PyYAML costs ~20 ms, so the validated result is cached as JSON in
${XDG_CACHE_HOME:-~/.cache}/pvectl/, keyed by the file's absolute path, mtime_ns and size (the config
holds no secret). A warm load imports neither `yaml` nor `dataclasses`; the records below are small
frozen classes with `__slots__` for the same reason (`dataclasses` pulls in `inspect`).
"""

from __future__ import annotations

import os

from pvectl.configdoc import DEFAULT_PORT, doc_ok as _doc_ok, did_you_mean as _did_you_mean
from pvectl.errors import ConfigError
from pvectl.records import Record as _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

__all__ = [
    "Config", "Node", "Credentials", "Tls", "Defaults", "Tags", "VmidRange", "VmidRanges", "CloudInit",
    "load_config", "loads_config", "find_config", "DEFAULT_PORT", "CONFIG_NAME", "MAX_CONFIG_BYTES",
]

CONFIG_NAME = "cluster-config.yaml"
_CACHE_VERSION = 1
# A real cluster-config.yaml is a few KiB; a bigger file is the wrong file (a disk image, a log...)
# and parsing it would take seconds and gigabytes before failing.
MAX_CONFIG_BYTES = 1024 * 1024


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
        _check_size(st.st_size, file)
        try:
            with open(file, "rb") as fh:
                data = fh.read(MAX_CONFIG_BYTES + 1)  # (the file may have grown since the stat)
        except OSError as e:
            raise ConfigError(f"{file}: cannot read config file: {e.strerror}", file=file) from None
        _check_size(len(data), file)
        from .configcheck import validate

        doc = validate(data, file, os.path.dirname(abspath), abspath)
        if cache:
            _cache_write(abspath, st, env, doc)
    return _select(doc, file, cluster)


def loads_config(text: str | bytes, *, file: str = "<string>", base_dir: str | None = None,
                 cluster: str | None = None) -> Config:
    """Validate config text (no lookup, no cache). Relative paths resolve against `base_dir` (cwd)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    _check_size(len(data), file)
    base = os.path.abspath(base_dir or os.getcwd())
    from .configcheck import validate

    return _select(validate(data, file, base, None), file, cluster)


def _check_size(size: int, file: str) -> None:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: the config file is {size / 1024**2:.1f} MiB; a {CONFIG_NAME} may be at "
                          f"most {MAX_CONFIG_BYTES // 1024} KiB", file=file,
                          hint="check that --config / $PVECTL_CONFIG names the cluster config")


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
        doc = obj["doc"]
        if (obj.get("version") == _CACHE_VERSION and obj.get("path") == abspath
                and obj.get("mtime_ns") == st.st_mtime_ns and obj.get("size") == st.st_size
                and _doc_ok(doc)):
            return doc
    except (OSError, ValueError, AttributeError, KeyError, TypeError, RecursionError):
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
