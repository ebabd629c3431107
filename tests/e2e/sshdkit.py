"""A real OpenSSH server on 127.0.0.1 whose `qm`, `ps` and `fuser` show a simulated cluster's nodes.

Layout (everything under one temporary directory, generated at run time, removed afterwards):
- `sshd -D -f sshd_config` on loopback, one free high port per simulated node (the node a session
  is for is the port it arrived on: `SSH_CONNECTION`'s last field); its own ed25519 host key; no
  password or keyboard-interactive login, no PAM, no forwarding, no TTY; only `root` (CI runs as
  root and sshd needs root to switch users) and only with the throwaway client key;
- `ForceCommand session`: every command runs through that wrapper, which puts the shims first on
  PATH and names the node; so the login cannot reach the machine's own `qm`/`ps` by accident;
- shims `qm`, `ps`, `fuser`, `lsof`: one small Python script that asks the simulator's loopback
  control API (`/_sim/nodes/{node}/host`, `/_sim/nodes/{node}/qm-unlock`);
- the client side: an `ssh -F client_config` with the client key, a known_hosts file that holds
  the generated host key for each port, and no global known_hosts.
`StrictModes no`: sshd would refuse keys under /tmp (world-writable, sticky); the key files themselves are
0600 in a 0700 directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_SHIM = r'''#!{python}
"""qm / ps / fuser / lsof as a Proxmox node shows them, from the simulator's control API."""
import json, os, ssl, sys, urllib.request

NODE = os.environ["PVE_SIM_NODE"]
CTX = ssl.create_default_context(cafile=os.environ["PVE_SIM_CA"])


def call(method, path, payload=None):
    req = urllib.request.Request(os.environ["PVE_SIM_URL"] + path, method=method,
                                 data=None if payload is None else json.dumps(payload).encode(),
                                 headers={{"Content-Type": "application/json"}})
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=10) as r:
            return json.load(r)["data"]
    except urllib.error.HTTPError as e:
        sys.stderr.write(json.load(e).get("error", str(e)) + "\n")
        sys.exit(2)


def host():
    return call("GET", f"/_sim/nodes/{{NODE}}/host")


def ps(args):
    pids = set()
    if "-p" in args:
        pids = {{int(p) for p in args[args.index("-p") + 1].split(",") if p.strip().isdigit()}}
    rows = [p for p in host()["processes"] if p["pid"] in pids]
    print(f"{{'PID':>7}} STAT     ELAPSED WCHAN  CMD")
    for p in rows:
        print(f"{{p['pid']:>7}} {{p['stat']:<4}} {{p['etime']:>11}} {{p['wchan']:<6}} {{p['cmd']}}")
    sys.exit(0 if rows else 1)


def lock_holders(path):
    name = os.path.basename(path)
    if not (name.startswith("lock-") and name.endswith(".conf")):
        return []
    return host()["lock_holders"].get(name[5:-5], [])


def fuser(args):
    path = args[-1]
    pids = lock_holders(path)
    sys.stderr.write(path + ":")
    print("".join(f" {{p}}" for p in pids))
    sys.exit(0 if pids else 1)


def lsof(args):
    for p in lock_holders(args[-1]):
        print(p)


def qm(args):
    cmd, vmid = args[0], args[1]
    configs = host()["configs"]
    if cmd == "unlock":
        call("POST", f"/_sim/nodes/{{NODE}}/qm-unlock", {{"vmid": int(vmid)}})
        return
    if vmid not in configs:
        sys.stderr.write(f"Configuration file 'nodes/{{NODE}}/qemu-server/{{vmid}}.conf' does not exist\n")
        sys.exit(2)
    if cmd == "config":
        for k, v in sorted(configs[vmid].items()):
            print(f"{{k}}: {{v}}")
    elif cmd == "listsnapshot":
        print("`-> current" + " " * 49 + "You are here!")


{{"qm": qm, "ps": ps, "fuser": fuser, "lsof": lsof}}[os.path.basename(sys.argv[0])](sys.argv[1:])
'''

_SESSION = """#!/bin/sh
# ForceCommand: the simulated node is the one whose port this connection arrived on
port=${{SSH_CONNECTION##* }}
PVE_SIM_NODE=$(sed -n "s/^$port //p" {dir}/ports)
PVE_SIM_URL={url}
PVE_SIM_CA={ca}
PATH={dir}/bin:/usr/bin:/bin
export PVE_SIM_NODE PVE_SIM_URL PVE_SIM_CA PATH
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    dir: Path
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]             # node -> port sshd listens on
    client_config: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_sshd(base: Path, *, nodes: list[str], control_url: str, ca_file: str) -> Sshd:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    keygen = shutil.which("ssh-keygen")
    if not os.path.exists(sshd) or keygen is None:
        raise RuntimeError("OpenSSH (openssh-server, openssh-client) is not installed: "
                           "apt-get install openssh-server openssh-client")
    d = base / "sshd"
    (d / "bin").mkdir(parents=True)
    for name, comment in (("host_key", "sim-host"), ("client_key", "sim-client")):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    ports = {n: free_port() for n in nodes}
    (d / "ports").write_text("".join(f"{p} {n}\n" for n, p in ports.items()))
    shim = d / "bin" / "shim"
    shim.write_text(_SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    for name in ("qm", "ps", "fuser", "lsof"):
        (d / "bin" / name).symlink_to(shim)
    session = d / "session"
    session.write_text(_SESSION.format(dir=d, url=control_url, ca=ca_file))
    session.chmod(0o755)
    conf = d / "sshd_config"
    conf.write_text("".join(f"Port {p}\n" for p in ports.values()) + f"""ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
PermitUserEnvironment no
ForceCommand {session}
LogLevel ERROR
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)     # privilege separation directory
    subprocess.run([sshd, "-t", "-f", str(conf)], check=True)
    with open(d / "sshd.log", "wb") as log:          # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=log)
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text("".join(f"[127.0.0.1]:{p} {host_pub[0]} {host_pub[1]}\n" for p in ports.values()))
    client = d / "client_config"
    client.write_text(f"""Host *
  IdentityFile {d}/client_key
  IdentitiesOnly yes
  UserKnownHostsFile {d}/known_hosts
  GlobalKnownHostsFile /dev/null
""")
    deadline = time.monotonic() + 10
    for port in ports.values():
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sshd did not start: " + (d / "sshd.log").read_text()) from None
                time.sleep(0.05)
    return Sshd(d, proc, ports, client)
