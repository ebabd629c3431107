"""GETs that reach outside the node: storage scans of remote servers, URL and OCI registry queries,
and the importer's view of an OVF/OVA file.

The simulated nodes have no network beyond the cluster: no DNS server and no route to other hosts. A
host name does not resolve; an IP literal resolves to itself but nothing answers there. Each reader
gives the error a real node gives in that situation, from the Perl code that runs:

- names: pve-storage Storage.pm::resolv_server (PVE::Tools::getaddrinfo_all) finds no address;
- commands: pve-common PVE/Cmd.pm::run_command dies "command '<cmd>' failed: exit code N";
- HTTP: LWP::UserAgent turns a failed connect into the status line
  "500 Can't connect to <host>:<port> (<reason>)".
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Any

from ..backend import ApiFail
from .base import Ctx, reader
from .storage import _storage, storage_config

# gai_strerror(EAI_NONAME) and connect(2)'s EHOSTUNREACH, as glibc words them
_NO_NAME = "Name or service not known"
_NO_ROUTE = "No route to host"
_SHELL_SAFE = re.compile(r"^[\w@%+=:,./-]+$")


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _resolve_server(server: str) -> str:
    # Storage.pm::scan_nfs / scan_cifs: die "unable to resolve address for server '<server>'"
    ip = _ip_literal(server)
    if ip is None:
        raise ApiFail(f"unable to resolve address for server '{server}'")
    return ip


def _host_and_port(text: str) -> tuple[str, int | None]:
    """pve-common PVE::Tools::parse_host_and_port: `host`, `host:port`, `[v6]` or `[v6]:port`."""
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text) or re.fullmatch(r"([^:]+)(?::(\d+))?", text)
    if m is None:
        return text, None
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _shell_quote(word: str) -> str:
    # PVE::Cmd::to_string quotes with String::ShellQuote: safe words stay bare
    return word if _SHELL_SAFE.match(word) else "'" + word.replace("'", "'\\''") + "'"


def _command_failed(cmd: list[str], exit_code: int) -> ApiFail:
    return ApiFail(f"command '{' '.join(_shell_quote(w) for w in cmd)}' failed: exit code {exit_code}")


def _cant_connect(host: str, port: int) -> str:
    """LWP's status line for a connection that never came up (LWP::Protocol::http::_new_socket)."""
    reason = _NO_ROUTE if _ip_literal(host) is not None else _NO_NAME
    return f"500 Can't connect to {host}:{port} ({reason})"


@reader("/nodes/{node}/scan/nfs")
def scan_nfs(ctx: Ctx) -> list[dict[str, Any]]:
    # pve-storage API2/Storage/Scan.pm::nfsscan -> Storage.pm::scan_nfs: `showmount` exits 1 when
    # the server's portmapper cannot be reached (clnt_create failure)
    ctx.backend.node(ctx.node)
    ip = _resolve_server(str(ctx.params["server"]))
    raise _command_failed(["/sbin/showmount", "--no-headers", "--exports", ip], 1)


@reader("/nodes/{node}/scan/cifs")
def scan_cifs(ctx: Ctx) -> list[dict[str, Any]]:
    # Scan.pm::cifsscan -> Storage.pm::scan_cifs: smbclient's stderr becomes the error (`raise($err)`
    # when no share was listed)
    ctx.backend.node(ctx.node)
    ip = _resolve_server(str(ctx.params["server"]))
    raise ApiFail(f"do_connect: Connection to {ip} failed (Error NT_STATUS_HOST_UNREACHABLE)")


@reader("/nodes/{node}/scan/iscsi")
def scan_iscsi(ctx: Ctx) -> list[dict[str, Any]]:
    # Scan.pm::iscsiscan -> Storage.pm::scan_iscsi -> resolv_portal raises a parameter error for a
    # name that does not resolve; ISCSIPlugin.pm::iscsi_discovery skips a portal that fails its TCP
    # ping (`next if !iscsi_test_portal(...)`), so an unreachable one lists no target
    ctx.backend.node(ctx.node)
    portal = str(ctx.params["portal"])
    host, _port = _host_and_port(portal)
    if _ip_literal(host) is None:
        raise ApiFail("Parameter verification failed.", 400,
                      {"portal": f"unable to resolve portal address '{portal}'"})
    return []


@reader("/nodes/{node}/scan/pbs")
def scan_pbs(ctx: Ctx) -> list[dict[str, Any]]:
    # Scan.pm::pbsscan -> PBSPlugin.pm::scan_datastores: die "error fetching datastores - $@" around
    # PVE::APIClient::LWP; a user logs in first (login: raise($response->status_line)), an API token
    # (`user@realm!name`) goes straight to the GET (call: raise($response->message), no status code)
    ctx.backend.node(ctx.node)
    server = str(ctx.params["server"])
    line = _cant_connect(server, int(ctx.params.get("port") or 8007))
    if "!" in str(ctx.params["username"]):
        line = line.split(" ", 1)[1]
    raise ApiFail(f"error fetching datastores - {line}")


@reader("/nodes/{node}/query-url-metadata")
def query_url_metadata(ctx: Ctx) -> dict[str, Any]:
    # pve-manager API2/Nodes.pm::query_url_metadata: a HEAD request with LWP::UserAgent, then
    # die "invalid server response: '" . $res->status_line() . "'" for anything but 200
    ctx.backend.node(ctx.node)
    url = urllib.parse.urlsplit(str(ctx.params["url"]))
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    raise ApiFail(f"invalid server response: '{_cant_connect(host, port)}'")


@reader("/nodes/{node}/query-oci-repo-tags")
def query_oci_repo_tags(ctx: Ctx) -> list[str]:
    # Nodes.pm::query_oci_repo_tags runs `skopeo list-tags docker://<reference>` (skopeo is a
    # Recommends of pve-manager, installed by default); without a registry it exits 1
    ctx.backend.node(ctx.node)
    raise _command_failed(["skopeo", "list-tags", f"docker://{ctx.params['reference']}"], 1)


# Plugin.pm::parse_volname for `import/<file>`: the importable file types
_IMPORT_VOLNAME = re.compile(r"^import/([ a-zA-Z0-9\-.+=_]+\.(ova|ovf|qcow2|raw|vmdk))$")
_PARSE_FAILURE = {"lvmthin": "unable to parse lvm volume name '{v}'", "lvm": "unable to parse lvm volume name '{v}'",
                  "rbd": "unable to parse rbd volume name '{v}'"}


@reader("/nodes/{node}/storage/{storage}/import-metadata")
def import_metadata(ctx: Ctx) -> dict[str, Any]:
    # pve-storage API2/Storage/Status.pm import-metadata: check_volume_access parses the volume name
    # with the storage's plugin, then Storage.pm::get_import_metadata -> DirPlugin.pm::get_import_metadata
    # reads the OVF (GuestImport/OVF.pm::parse_ovf: file_get_contents for .ovf, `tar -xO` for .ova);
    # no such file exists on a simulated node
    s = _storage(ctx)
    volume = str(ctx.params["volume"])
    if s.plugintype in _PARSE_FAILURE:
        raise ApiFail(_PARSE_FAILURE[s.plugintype].format(v=volume))
    m = _IMPORT_VOLNAME.match(volume)
    if m is None:
        raise ApiFail(f"unable to parse directory volume name '{volume}'")
    if m.group(2) not in ("ova", "ovf"):
        raise ApiFail("invalid format")
    path = f"{storage_config(s).get('path', '/mnt/pve/' + s.sid)}/import/{m.group(1)}"
    if m.group(2) == "ovf":
        raise ApiFail(f"can't open '{path}' - No such file or directory")
    raise _command_failed(["tar", "-xO", "--wildcards", "--occurrence=1", "-f", path, "*.ovf"], 2)
