"""`Cluster`: a simulated Proxmox VE cluster on loopback, as a context manager or pytest fixture.

    with Cluster(nodes=3, bind="127.0.0.1", port=0) as sim:
        cfg = sim.config_path            # a working cluster-config.yaml (CA file, token file)
        sim.stop_node("pve2")            # listener down + corosync membership offline
        sim.fail_next(status=500, message="got timeout", path=r"/status/current$")

Addressing:
- `bind=None` (default): node N listens on its own loopback address 127.0.1.N, port 8006 like a real
  host (`port` overrides the port; `port=0` lets the OS choose).
- `bind="127.0.0.1", port=0`: every node on one address with OS-chosen free ports (tests).
- `bind=X, port=P>0`: ports P, P+1, ... (`port=None` means P=8006).
Only loopback (127.0.0.0/8) is ever bound or contacted.

Files written into `state_dir` (a temporary directory when None, removed on stop):
`cluster-config.yaml`, `pve-root-ca.pem` (+ `priv/pve-root-ca.key`), `nodes/<node>/pve-ssl.{pem,key}`,
`token` (line 1 the token id, line 2 the secret, mode 0600 - the seed's `pass` entry layout), `users`
(one `user@realm:password` line per user who can log in with `POST /access/ticket`, mode 0600: `root@pam`
with a generated password, kept across restarts), and `state.json` on stop / `save_state()`. A
`state.json` found there is loaded instead of generating.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from . import certs
from .faults import Faults
from .server import (
    IDLE_TIMEOUT,
    MAX_WORKERS,
    PROXY_TIMEOUT,
    Handler,
    SimAddressError,
    SimServer,
    check_loopback,
)

if TYPE_CHECKING:
    from ..cluster import Cluster as PvectlCluster
    from .backend import Backend
    from .models import State

TOKEN_ID = "root@pam!pvectl"
ROOT_USER = "root@pam"
DEFAULT_PORT = 8006


class Cluster:
    def __init__(
        self,
        nodes: int = 3,
        vms: int = 12,
        templates: int = 2,
        *,
        time_scale: float = 0.05,
        bind: str | None = None,
        port: int | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        proxy_timeout: float = PROXY_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        workers: int = MAX_WORKERS,
        key_type: certs.KeyType = "ec",
        api_factory: Callable[[Any], Handler] | None = None,
        containers: int = 0,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        if vms < 0 or templates < 0 or containers < 0:
            raise ValueError("vms, templates and containers must not be negative")
        if time_scale < 0:
            raise ValueError("time_scale must not be negative (0 = tasks finish at once)")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if bind is not None:
            bind = check_loopback(bind)
        self.node_count = nodes
        self.vm_count = vms
        self.template_count = templates
        self.container_count = containers
        self.time_scale = time_scale
        self.bind = bind
        self.port = port
        self.seed = seed
        self.proxy_timeout = proxy_timeout
        self.idle_timeout = idle_timeout
        self.workers = workers
        self.key_type = key_type
        self._api_factory = api_factory
        self._state_dir_arg = Path(state_dir).expanduser().resolve() if state_dir is not None else None
        self._state_dir: Path | None = None
        self._temporary = False
        self._server: SimServer | None = None
        self._backend: Backend | None = None
        self._faults: Faults | None = None
        self._token_secret: str | None = None
        self._users: dict[str, str] | None = None
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Cluster:
        with self._lock:
            if self._server is not None:
                return self
            try:
                self._start()
            except BaseException:
                self._teardown(save=False)
                raise
            return self

    def _start(self) -> None:
        from .control import ControlApi

        # state directory
        if self._state_dir_arg is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="pvectl-sim-"))
            self._temporary = True
        else:
            self._state_dir = self._state_dir_arg
            self._temporary = False
            ensure_writable_dir(self._state_dir)
        sd = self._state_dir

        # state: reuse state.json, else generate
        state = self._load_or_generate()
        names = list(state.nodes)
        addresses = self._addresses(names)

        # TLS: the CA is reused from the state dir, so client configs stay valid across restarts
        ca = certs.ensure_ca(sd, key_type=self.key_type)
        self._faults = Faults()
        server = SimServer(ca_pem=ca.cert_pem, faults=self._faults, control=ControlApi(self),
                           workers=self.workers, proxy_timeout=self.proxy_timeout,
                           idle_timeout=self.idle_timeout)
        self._server = server
        self._faults.server = server
        for name in names:
            host, port = addresses[name]
            node_cert = certs.ensure_node_cert(sd, ca, name, host, key_type=self.key_type)
            lst = server.add_node(name, host, port, certs.server_context(node_cert))
            node = state.nodes[name]
            node.ip, node.port = lst.host, lst.port

        # the API behind the listeners
        self._backend = self._make_backend(state)
        secret = self._token_secret_for(state)
        self._backend.add_token(TOKEN_ID, secret)
        self._token_secret = secret
        server.api = self._make_api(self._backend)

        self._users = self._users_for()
        for userid, password in self._users.items():
            self._backend.access.add_user(userid, password)

        self._write_token(secret)
        self._write_secret_file(self.users_path, "".join(f"{u}:{p}\n" for u, p in self._users.items()))
        self._write_config()
        server.start()

    def stop(self) -> None:
        with self._lock:
            if self._server is None and self._backend is None:
                return
            self._teardown(save=True)

    def _teardown(self, *, save: bool) -> None:
        server, self._server = self._server, None
        if self._faults is not None:
            self._faults.clear()       # release requests held by a hang
        if server is not None:
            server.stop()
        backend, self._backend = self._backend, None
        try:
            if save and backend is not None and not self._temporary and self._state_dir is not None:
                self._save(backend, self._state_dir / "state.json")
        finally:
            if backend is not None:
                backend.close()
            if self._temporary and self._state_dir is not None:
                shutil.rmtree(self._state_dir, ignore_errors=True)
                self._state_dir = None
                self._temporary = False

    def _load_or_generate(self) -> State:
        from . import models

        assert self._state_dir is not None
        path = self._state_dir / "state.json"
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                return models.State.from_json(json.load(f))
        return models.generate_state(nodes=self.node_count, vms=self.vm_count, templates=self.template_count,
                                     seed=self.seed, containers=self.container_count)

    def _make_backend(self, state: State) -> Backend:
        from .backend import Backend

        return Backend(state, time_scale=self.time_scale)

    def _make_api(self, backend: Any) -> Handler:
        if self._api_factory is not None:
            return self._api_factory(backend)
        from .routes import Api

        return Api(backend)

    def _addresses(self, names: list[str]) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        for i, name in enumerate(names, start=1):
            if self.bind is None:
                if i > 254:
                    raise SimAddressError("at most 254 nodes get their own 127.0.1.N address; use bind=")
                port = DEFAULT_PORT if self.port is None else self.port
                out[name] = (f"127.0.1.{i}", port)
            else:
                base = DEFAULT_PORT if self.port is None else self.port
                out[name] = (self.bind, 0 if base == 0 else base + i - 1)
        return out

    def _token_secret_for(self, state: State) -> str:
        # Reuse the secret of an existing token file (so a client keeps working across restarts),
        # else the one in a loaded state, else a new random UUID like `pveum user token add`.
        assert self._state_dir is not None
        tf = self._state_dir / "token"
        if tf.is_file():
            lines = [ln.strip() for ln in tf.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if len(lines) >= 2 and lines[0] == TOKEN_ID:
                return lines[-1]
        tok = getattr(state, "tokens", {}).get(TOKEN_ID)
        if tok is not None and getattr(tok, "secret", None):
            return str(tok.secret)
        return str(uuid.uuid4())

    def _users_for(self) -> dict[str, str]:
        # Users listed in an existing `users` file keep their passwords; root@pam always exists.
        users: dict[str, str] = {}
        uf = self.users_path
        if uf.is_file():
            for line in uf.read_text(encoding="utf-8").splitlines():
                userid, sep, password = line.strip().partition(":")
                if sep and userid and password:
                    users[userid] = password
        users.setdefault(ROOT_USER, secrets.token_urlsafe(18))
        return users

    def _write_token(self, secret: str) -> None:
        self._write_secret_file(self.token_path, f"{TOKEN_ID}\n{secret}\n")

    @staticmethod
    def _write_secret_file(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)          # a stale one may have another mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)

    def _write_config(self) -> None:
        import yaml

        assert self._backend is not None
        state = self._backend.state
        doc = {
            "cluster": {
                "name": getattr(state, "cluster_name", "simcluster"),
                "nodes": [{"name": n, "host": h, "port": p} for n, (h, p) in self.nodes.items()],
            },
            "credentials": {"token_file": str(self.token_path), "ssh_user": "root"},
            "tls": {"ca_file": str(self.ca_path)},
            "defaults": {"storage": "local-lvm", "network_bridge": "vmbr0"},
            "tags": {"templates": "template"},
            "vmid_ranges": {"vms": "100-899", "templates": "9000-9999"},
            "cloudinit": {"default_user": "ubuntu"},
        }
        text = ("# Written by `pvectl sim serve` / pvectl.sim.Cluster for the simulated cluster.\n"
                + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
        path = self.config_path
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    # -- addressing and files -------------------------------------------------------------------

    def _need(self) -> tuple[SimServer, Backend]:
        if self._server is None or self._backend is None:
            raise RuntimeError("the simulated cluster is not running (call start() or use `with Cluster(...)`)")
        return self._server, self._backend

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._state_dir

    @property
    def config_path(self) -> Path:
        return self.state_dir / "cluster-config.yaml"

    @property
    def ca_path(self) -> Path:
        return self.state_dir / certs.CA_CERT_NAME

    @property
    def token_path(self) -> Path:
        return self.state_dir / "token"

    @property
    def users_path(self) -> Path:
        return self.state_dir / "users"

    @property
    def user(self) -> str:
        """The user who can log in with a password (`POST /access/ticket`, proxmoxer's `password=`)."""
        return ROOT_USER

    @property
    def password(self) -> str:
        if self._users is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._users[ROOT_USER]

    def add_user(self, userid: str, password: str | None = None, *,
                 privs: dict[str, list[str]] | None = None) -> str:
        """Add a user who can log in with a password (Administrator on `/` when `privs` is None);
        returns the password."""
        password = password or secrets.token_urlsafe(18)
        self.backend.access.add_user(userid, password, privs=privs)
        return password

    @property
    def token_id(self) -> str:
        return TOKEN_ID

    @property
    def token_secret(self) -> str:
        if self._token_secret is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._token_secret

    def client(self, **options: Any) -> PvectlCluster:
        """A library `pvectl.Cluster` connected to this simulated cluster: the config it wrote, TLS
        verified with its CA, the token it generated. `options` are `Cluster.from_config`'s (`dry_run`,
        `timeout`, `on_event`, `via`, ...); `audit` defaults to `audit.jsonl` in the state directory, so
        a test run never appends to the user's own audit log.

            with pvectl.sim.Cluster(nodes=3) as sim, sim.client() as pve:
                pve.vms.start("web-1")
        """
        from ..cluster import Cluster as PvectlCluster

        self._need()
        options.setdefault("audit", str(self.state_dir / "audit.jsonl"))
        return PvectlCluster.from_config(str(self.config_path), **options)

    @property
    def nodes(self) -> dict[str, tuple[str, int]]:
        server, _ = self._need()
        return {name: lst.address for name, lst in server.listeners.items()}

    def url(self, node: str) -> str:
        host, port = self._need()[0].address(node)
        return f"https://{host}:{port}"

    @property
    def backend(self) -> Backend:
        return self._need()[1]

    @property
    def server(self) -> SimServer:
        return self._need()[0]

    @property
    def faults(self) -> Faults:
        self._need()
        assert self._faults is not None
        return self._faults

    # -- control (also served as /_sim/... by control.py) ----------------------------------------

    def _check_node(self, node: str) -> None:
        if node not in self._need()[0].listeners:
            raise KeyError(f"no such node '{node}'")

    def stop_node(self, node: str) -> None:
        """The node goes down: pveproxy stops listening and it leaves the corosync membership."""
        self._check_node(node)
        self.faults.stop_listener(node)
        self.backend.set_node_online(node, False)

    def start_node(self, node: str) -> None:
        self._check_node(node)
        self.backend.set_node_online(node, True)
        self.faults.start_listener(node)

    def stop_listener(self, node: str) -> None:
        """Only pveproxy is down (the node stays in the membership, tasks keep running)."""
        self._check_node(node)
        self.faults.stop_listener(node)

    def start_listener(self, node: str) -> None:
        self._check_node(node)
        self.faults.start_listener(node)

    def slow_node(self, node: str, seconds: float) -> None:
        self._check_node(node)
        self.faults.slow_node(node, seconds)

    def hang_node(self, node: str, seconds: float | None = None) -> None:
        self._check_node(node)
        self.faults.hang_node(node, seconds)

    def unhang_node(self, node: str | None = None) -> None:
        if node is not None:
            self._check_node(node)
        self.faults.unhang_node(node)

    def fail_next(self, count: int = 1, *, status: int = 500, message: str | None = None,
                  method: str | None = None, path: str | None = None, node: str | None = None) -> None:
        self.faults.fail_next(count, status=status, message=message, method=method, path=path, node=node)

    def drop_next(self, count: int = 1, *, method: str | None = None, path: str | None = None,
                  node: str | None = None) -> None:
        self.faults.drop_next(count, method=method, path=path, node=node)

    def clear_faults(self, node: str | None = None) -> None:
        self.faults.clear(node)

    def hold_lock(self, vmid: int, *, seconds: float | None = None, kind: str = "backup") -> str:
        """A hung vzdump task: `kind` set as the config lock (`VM is locked (<kind>)` for others), or with
        `kind=""` the VM's flock held (others time out after 10 PVE seconds). Returns its UPID."""
        return self.backend.hold_lock(vmid, seconds=seconds, kind=kind)

    def release_lock(self, vmid: int) -> None:
        self.backend.release_lock(vmid)

    def fail_task(self, *, type: str, message: str, times: int = 1) -> None:  # noqa: A002 - mirrors Backend
        self.backend.fail_task(type=type, message=message, times=times)

    def set_node(self, node: str, *, mem_total: int | None = None, mem_used: int | None = None,
                 cpu: float | None = None, maxcpu: int | None = None) -> None:
        self._check_node(node)
        self.backend.set_node_resources(node, mem_total=mem_total, mem_used=mem_used, cpu=cpu, maxcpu=maxcpu)

    def add_token(self, tokenid: str, secret: str | None = None, *,
                  privs: dict[str, list[str]] | None = None) -> str:
        """Add an API token (full Administrator rights when `privs` is None); returns its secret."""
        secret = secret or str(uuid.uuid4())
        self.backend.add_token(tokenid, secret, privs=privs)
        return secret

    def save_state(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the cluster state as JSON (default `<state_dir>/state.json`); returns the path."""
        backend = self.backend
        target = Path(path) if path is not None else self.state_dir / "state.json"
        self._save(backend, target)
        return target

    @staticmethod
    def _save(backend: Backend, target: Path) -> None:
        lock = getattr(backend, "mu", None) or getattr(backend, "lock", None)
        if lock is not None:
            with lock:
                data = backend.state.to_json()
        else:
            data = backend.state.to_json()
        target.parent.mkdir(parents=True, exist_ok=True)
        # the state holds the token secret: created 0600 (like `token`), never readable by others
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)          # a stale one may have another mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, target)

    def requests_log(self, *, since: int = 0, node: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Recent requests: seq, time, node, method, path, query, status, client, forwarded, proxied_to."""
        return self.server.requests.entries(since=since, node=node, limit=limit)

    def clear_requests(self) -> None:
        self.server.requests.clear()

    def summary(self) -> dict[str, Any]:
        server, backend = self._need()
        state = backend.state
        vms = list(state.vms.values())
        templates = sum(1 for v in vms if v.is_template)
        return {
            "cluster": getattr(state, "cluster_name", "simcluster"),
            "config": str(self.config_path),
            "time_scale": self.time_scale,
            "nodes": {
                name: {
                    "host": lst.host, "port": lst.port, "listener": lst.up,
                    "online": bool(getattr(state.nodes.get(name), "online", True)),
                    "connections": lst.connections, "active": lst.active, "max_active": lst.max_active,
                }
                for name, lst in server.listeners.items()
            },
            "vms": len(vms) - templates,
            "templates": templates,
            "faults": self.faults.snapshot(),
            "requests": server.requests.last_seq,
        }


def ensure_writable_dir(path: Path) -> None:
    """Create `path` if needed and check that files can be written there (raises OSError)."""
    path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as e:
        raise PermissionError(e.errno, f"cannot write to state directory {path}: {e.strerror}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
