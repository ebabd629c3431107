"""Running the user's own `ssh` on a node, safely.

- argv lists only (no local shell); the remote command is one of the fixed scripts below into which
  only integers are put (a VMID, a PID), each checked to be an int in range first: nothing read from
  the cluster (names, UPIDs, config values) ever reaches a shell.
- `BatchMode=yes` (never a password or passphrase prompt), `StrictHostKeyChecking=yes` (an unknown
  or changed host key fails instead of being trusted), a connect timeout, no forwarding of any kind,
  no TTY, stdin from /dev/null.
- The user's ssh configuration stays in charge of keys and known_hosts; `config_file` passes `-F`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]")
_USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
# qemu-server: a VMID is 100..999999999 (pve-vmid, pve-semantics §4.1); Linux PIDs fit in 22 bits
VMID_RANGE = (100, 999_999_999)
PID_RANGE = (1, 4_194_304)
# `ssh` exits 255 when it could not connect or authenticate (ssh(1), EXIT STATUS)
SSH_FAILED = 255


class SshResult:
    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def connected(self) -> bool:
        return self.returncode != SSH_FAILED

    def error(self) -> str:
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"ssh exited with {self.returncode}"


def checked_int(value: object, what: str, bounds: tuple[int, int]) -> int:
    """`value` as an int within `bounds`, or ValueError: the only data that enters a remote command."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{what} {value} is out of range {bounds[0]}..{bounds[1]}")
    return value


def _checked_host(host: str) -> str:
    # a destination starting with `-` would be read as an option; anything else odd is refused too
    if not host or host.startswith("-") or not set(host) <= _HOST_CHARS:
        raise ValueError(f"not a usable ssh host name: {host!r}")
    return host


def _checked_user(user: str) -> str:
    if not user or user.startswith("-") or not set(user) <= _USER_CHARS:
        raise ValueError(f"not a usable ssh user name: {user!r}")
    return user


class Ssh:
    """How to reach nodes over ssh: user, optional port, optional `-F` config file, timeouts."""

    def __init__(self, user: str = "root", *, port: int | None = None, config_file: str | None = None,
                 connect_timeout: int = 5, command_timeout: float = 20.0, program: str = "ssh") -> None:
        self.user = _checked_user(user)
        self.port = None if port is None else checked_int(port, "ssh port", (1, 65535))
        self.config_file = config_file
        self.connect_timeout = checked_int(connect_timeout, "connect timeout", (1, 300))
        self.command_timeout = command_timeout
        self.program = program

    def argv(self, host: str, remote: Sequence[str], *, port: int | None = None) -> list[str]:
        """The full `ssh` argv (no shell involved locally)."""
        argv = [self.program]
        if self.config_file:
            argv += ["-F", self.config_file]
        port = port if port is not None else self.port
        if port is not None:
            argv += ["-p", str(checked_int(port, "ssh port", (1, 65535)))]
        for opt in ("BatchMode=yes", "StrictHostKeyChecking=yes", f"ConnectTimeout={self.connect_timeout}",
                    "PasswordAuthentication=no", "KbdInteractiveAuthentication=no", "ForwardAgent=no",
                    "ForwardX11=no", "ClearAllForwardings=yes", "RequestTTY=no", "LogLevel=ERROR"):
            argv += ["-o", opt]
        argv += ["-n", "-T", "-l", self.user, "--", _checked_host(host)]
        return argv + list(remote)

    def run(self, host: str, remote: Sequence[str], *, port: int | None = None) -> SshResult:
        import subprocess

        argv = self.argv(host, remote, port=port)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=self.command_timeout, check=False)
        except FileNotFoundError:
            return SshResult(argv, SSH_FAILED, "", f"`{self.program}` is not installed")
        except subprocess.TimeoutExpired:
            return SshResult(argv, SSH_FAILED, "", f"no answer within {self.command_timeout:g} s")
        return SshResult(argv, proc.returncode, proc.stdout, proc.stderr)


# ------------------------------------------------------------------------ fixed remote commands
LOCK_FILE = "/run/lock/qemu-server/lock-{vmid}.conf"   # qemu-server QemuConfig.pm::config_file_lock
_SECTION = "@@pvectl "


def inspect_script(*, vmid: int | None, pid: int | None) -> str:
    """One remote script (one connection) for the task's process and the VM's lock: only the two
    checked integers are put into it. Each section is framed so the output parses unambiguously."""
    parts: list[tuple[str, str]] = []
    if pid is not None:
        p = checked_int(pid, "PID", PID_RANGE)
        parts.append(("ps", f"ps -o pid,stat,etime,wchan,cmd -p {p}"))
    if vmid is not None:
        v = checked_int(vmid, "VMID", VMID_RANGE)
        lock = LOCK_FILE.format(vmid=v)
        # who holds the flock: fuser (psmisc) where present, else lsof; then those processes' state
        parts.append(("holders", f"if command -v fuser >/dev/null 2>&1; then fuser {lock} 2>/dev/null; "
                                 f"else lsof -t {lock} 2>/dev/null; fi"))
        parts.append(("holder-ps", f"for h in $(fuser {lock} 2>/dev/null || lsof -t {lock} 2>/dev/null); "
                                   "do ps -o pid,stat,etime,wchan,cmd -p \"$h\" | tail -n +2; done"))
        parts.append(("qm-config", f"qm config {v} 2>&1 | grep '^lock:'"))
        parts.append(("qm-listsnapshot", f"qm listsnapshot {v} 2>&1"))
    return "; ".join(f"echo '{_SECTION}{name}'; {cmd}; echo \"{_SECTION}rc $?\"" for name, cmd in parts)


def unlock_command(vmid: int) -> list[str]:
    """`qm unlock VMID` (qemu-server CLI/qm.pm::unlock): the seed's own command for a stale lock."""
    return ["qm", "unlock", str(checked_int(vmid, "VMID", VMID_RANGE))]


def parse_sections(stdout: str) -> dict[str, tuple[list[str], int | None]]:
    """`{section: (lines, exit code)}` from an `inspect_script` run."""
    out: dict[str, tuple[list[str], int | None]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(_SECTION):
            word = line[len(_SECTION):].strip()
            if word.startswith("rc ") and name is not None:
                rc = word[3:].strip()
                out[name] = (lines, int(rc) if rc.isdigit() else None)
                name, lines = None, []
            else:
                name, lines = word, []
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = (lines, None)     # cut off before its exit code
    return out


def parse_ps(lines: list[str]) -> list[dict[str, str | int]]:
    """Rows of `ps -o pid,stat,etime,wchan,cmd` (a header line is skipped)."""
    rows: list[dict[str, str | int]] = []
    for line in lines:
        fields = line.split(None, 4)
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        rows.append({"pid": int(fields[0]), "stat": fields[1], "etime": fields[2], "wchan": fields[3],
                     "cmd": fields[4] if len(fields) > 4 else ""})
    return rows
