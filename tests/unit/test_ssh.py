"""ssh.py: the argv pvectl gives `ssh`, and the only data allowed into a remote command."""

from __future__ import annotations

import pytest

from pvectl import ssh


def test_argv_is_batch_mode_with_host_keys_checked_and_no_forwarding() -> None:
    argv = ssh.Ssh("root", connect_timeout=7).argv("pve1.example.com", ["qm", "unlock", "100"], port=2222)
    opts = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert {"BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=7", "PasswordAuthentication=no",
            "KbdInteractiveAuthentication=no", "ForwardAgent=no", "ClearAllForwardings=yes"} <= set(opts)
    # the destination comes after `--`, so it can never be read as an option
    assert argv[argv.index("--") + 1] == "pve1.example.com"
    assert argv[-3:] == ["qm", "unlock", "100"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "root"


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "pve1;id", "pve 1", "$(id)", ""])
def test_odd_host_names_are_refused(host: str) -> None:
    with pytest.raises(ValueError):
        ssh.Ssh().argv(host, ["true"])


@pytest.mark.parametrize("value", ["100; rm -rf /", "100", 99, 10**10, True, 1.5])
def test_only_integers_in_range_enter_the_remote_script(value: object) -> None:
    with pytest.raises(ValueError):
        ssh.inspect_script(vmid=value, pid=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ssh.unlock_command(value)  # type: ignore[arg-type]


def test_inspect_script_holds_only_fixed_text_and_the_two_integers() -> None:
    script = ssh.inspect_script(vmid=123, pid=4567)
    assert "ps -o pid,stat,etime,wchan,cmd -p 4567" in script
    assert "/run/lock/qemu-server/lock-123.conf" in script
    assert "qm config 123" in script and "qm listsnapshot 123" in script
    assert script.replace("123", "N").replace("4567", "P") == \
        ssh.inspect_script(vmid=999, pid=8888).replace("999", "N").replace("8888", "P")


def test_parse_sections_and_ps() -> None:
    out = ("@@pvectl ps\n    PID STAT     ELAPSED WCHAN  CMD\n   4567 D      01:02 nfs_wait task UPID:x\n"
           "@@pvectl rc 0\n@@pvectl holders\n 4567\n@@pvectl rc 0\n@@pvectl qm-config\nlock: backup\n@@pvectl rc 0\n")
    sec = ssh.parse_sections(out)
    assert sec["holders"] == ([" 4567"], 0)
    rows = ssh.parse_ps(sec["ps"][0])
    assert rows == [{"pid": 4567, "stat": "D", "etime": "01:02", "wchan": "nfs_wait", "cmd": "task UPID:x"}]
    assert sec["qm-config"][0] == ["lock: backup"]


def test_unreachable_is_reported_not_raised() -> None:
    res = ssh.Ssh(program="/nonexistent/ssh").run("127.0.0.1", ["true"])
    assert not res.connected and "not installed" in res.error()
