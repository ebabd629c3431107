"""Schema matching, PVE-exact parameter validation and pveproxy's form decoding (`pvectl.schema`)."""

from __future__ import annotations

import pytest

from pvectl.schema import Endpoint, ParamError, RepeatedValue, Schema, decode_urlencoded, split_list

NOT_IN_SCHEMA = "property is not defined in schema and the schema does not allow additional properties"
MISSING = "property is missing and it is not optional"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load()


def request(schema: Schema, method: str, path: str, body: str = "", query: str = "") -> dict[str, object]:
    """Decode like pveproxy (body, then query overrides), merge path params, validate."""
    found = schema.match(method, path)
    assert found is not None, f"{method} {path}"
    endpoint, path_params = found
    params: dict[str, object] = dict(decode_urlencoded(body))
    params.update(decode_urlencoded(query))
    params.update(path_params)
    return schema.validate(endpoint, params)


def errors_of(schema: Schema, method: str, path: str, body: str = "", query: str = "") -> dict[str, str]:
    with pytest.raises(ParamError) as info:
        request(schema, method, path, body, query)
    assert str(info.value) == "Parameter verification failed."
    assert info.value.message == "Parameter verification failed.\n"
    return info.value.errors


def validate_json(schema: Schema, method: str, path: str, body: dict[str, object]) -> dict[str, object]:
    endpoint, path_params = schema.match(method, path)  # type: ignore[misc]
    return schema.validate(endpoint, {**body, **path_params})


# --------------------------------------------------------------------------------------------------
# loading and matching
# --------------------------------------------------------------------------------------------------


def test_load_is_cached_and_complete(schema: Schema) -> None:
    assert Schema.load() is schema
    assert len(schema.endpoints) == 649


def test_match_returns_endpoint_and_path_params(schema: Schema) -> None:
    found = schema.match("GET", "/nodes/pve1/qemu/100/status/current")
    assert found is not None
    endpoint, params = found
    assert isinstance(endpoint, Endpoint)
    assert endpoint.path == "/nodes/{node}/qemu/{vmid}/status/current"
    assert endpoint.method == "GET"
    assert endpoint.proxyto == "node"
    assert params == {"node": "pve1", "vmid": "100"}
    assert "returns" in endpoint.info


def test_match_static_segment_beats_parameter(schema: Schema) -> None:
    endpoint, params = schema.match("GET", "/cluster/resources")  # type: ignore[misc]
    assert endpoint.path == "/cluster/resources" and params == {}
    endpoint, params = schema.match("GET", "/nodes/pve1/qemu")  # type: ignore[misc]
    assert endpoint.path == "/nodes/{node}/qemu" and params == {"node": "pve1"}


def test_match_collapses_empty_segments_like_find_handler(schema: Schema) -> None:
    endpoint, params = schema.match("GET", "//nodes//pve1/status/")  # type: ignore[misc]
    assert endpoint.path == "/nodes/{node}/status" and params == {"node": "pve1"}


def test_match_unknown_path_or_method(schema: Schema) -> None:
    assert schema.match("GET", "/nodes/pve1/foo") is None
    assert schema.match("POST", "/version") is None
    assert schema.match("PATCH", "/version") is None
    assert schema.path_exists("/version")
    assert schema.path_exists("/nodes/pve1/qemu/100/status/start")
    assert not schema.path_exists("/nodes/pve1/foo")


def test_upid_path_param(schema: Schema) -> None:
    upid = "UPID:pve1:0000ABCD:0001E240:65A1B2C3:qmstart:100:root@pam:"
    for method, suffix in (("GET", "/status"), ("GET", "/log"), ("DELETE", "")):
        endpoint, params = schema.match(method, f"/nodes/pve1/tasks/{upid}{suffix}")  # type: ignore[misc]
        assert endpoint.path == "/nodes/{node}/tasks/{upid}" + suffix
        assert params == {"node": "pve1", "upid": upid}
    assert request(schema, "GET", f"/nodes/pve1/tasks/{upid}/log", query="start=0&limit=0") == {
        "node": "pve1",
        "upid": upid,
        "start": 0,
        "limit": 0,
    }
    assert request(schema, "DELETE", f"/nodes/pve1/tasks/{upid}") == {"node": "pve1", "upid": upid}
    assert errors_of(schema, "GET", f"/nodes/pve1/tasks/{upid}/log", query="limit=-1") == {
        "limit": "value must have a minimum value of 0"
    }
    assert errors_of(schema, "GET", f"/nodes/pve1/tasks/{upid}/status", query="x=1") == {"x": NOT_IN_SCHEMA}


def test_permissions_and_proxyto(schema: Schema) -> None:
    endpoint, _ = schema.match("POST", "/nodes/pve1/qemu/100/status/start")  # type: ignore[misc]
    assert schema.permissions(endpoint) == {"check": ["perm", "/vms/{vmid}", ["VM.PowerMgmt"]]}
    version, _ = schema.match("GET", "/version")  # type: ignore[misc]
    assert version.proxyto is None
    assert schema.permissions(version) == {"user": "all"}


def test_indexed_keys_are_expanded(schema: Schema) -> None:
    endpoint, _ = schema.match("PUT", "/nodes/pve1/qemu/100/config")  # type: ignore[misc]
    props = endpoint.properties
    assert "net[n]" not in props
    for key in ("net0", "net31", "ipconfig31", "scsi30", "virtio15", "sata5", "ide3", "unused255", "usb13"):
        assert key in props, key
    for key in ("net32", "ipconfig32", "scsi31", "virtio16", "sata6", "ide4", "unused256", "usb14"):
        assert key not in props, key
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", "net32=virtio") == {"net32": NOT_IN_SCHEMA}


# --------------------------------------------------------------------------------------------------
# decode_urlencoded
# --------------------------------------------------------------------------------------------------


def test_decode_urlencoded_seed_errata_values() -> None:
    # spec/seed-errata.md §1: what pveproxy receives from the seed's `curl -d`
    assert decode_urlencoded("ipconfig0=ip=dhcp") == {"ipconfig0": "ip"}
    assert decode_urlencoded("net0=virtio,bridge=vmbr0") == {"net0": "virtio,bridge"}
    assert decode_urlencoded("size=+10G") == {"size": " 10G"}
    assert decode_urlencoded("name=web01&full=1") == {"name": "web01", "full": "1"}
    # correctly encoded
    assert decode_urlencoded("ipconfig0=ip%3Ddhcp") == {"ipconfig0": "ip=dhcp"}
    assert decode_urlencoded("size=%2B10G") == {"size": "+10G"}


def test_decode_urlencoded_perl_split_edge_cases() -> None:
    # `my ($k, $v) = split(/=/, $kv)` has LIMIT 3, so trailing empty fields are kept
    assert decode_urlencoded("a=") == {"a": ""}
    assert decode_urlencoded("=b") == {"": "b"}
    assert decode_urlencoded("=") == {"": ""}
    assert decode_urlencoded("a==c") == {"a": ""}
    assert decode_urlencoded("a=b=c") == {"a": "b"}
    assert decode_urlencoded("a") == {"a": None}
    # empty pairs: inner ones stay (key "" without value), trailing ones are dropped
    assert decode_urlencoded("a=1&&b=2") == {"a": "1", "": None, "b": "2"}
    assert decode_urlencoded("a=1&;") == {"a": "1"}
    assert decode_urlencoded("a=1;b=2") == {"a": "1", "b": "2"}
    # `return $res if !$data`
    assert decode_urlencoded("") == {}
    assert decode_urlencoded(None) == {}
    assert decode_urlencoded("0") == {}


def test_decode_urlencoded_percent_plus_and_utf8() -> None:
    assert decode_urlencoded("a=x+y%20z") == {"a": "x y z"}
    assert decode_urlencoded("a=%2541") == {"a": "%41"}  # decoded once
    assert decode_urlencoded("a=%zz%4") == {"a": "%zz%4"}
    assert decode_urlencoded("n=caf%C3%A9") == {"n": "café"}
    assert decode_urlencoded(b"n=caf\xc3\xa9") == {"n": "café"}
    assert decode_urlencoded("n=%FF") == {"n": "\ufffd"}
    assert decode_urlencoded("k%C3%A9=1") == {"k\u00c3\u00a9": "1"}  # keys are not UTF-8 decoded
    assert decode_urlencoded("a+b=1") == {"a b": "1"}


def test_decode_urlencoded_repeated_keys() -> None:
    res = decode_urlencoded("vmid=100&vmid=101&vmid=102")
    assert res == {"vmid": ["100", "101", "102"]}
    assert isinstance(res["vmid"], RepeatedValue)
    assert decode_urlencoded("a=1&a") == {"a": None}  # a key without '=' resets it to undef
    assert decode_urlencoded("a&a=1") == {"a": "1"}


def test_split_list() -> None:
    assert split_list("a,b;c  d") == ["a", "b", "c", "d"]
    assert split_list(" ,a") == ["a"]
    assert split_list("a\0b c") == ["a", "b c"]
    assert split_list("") == []
    assert split_list(None) == []


# --------------------------------------------------------------------------------------------------
# seed errata: mangled form bodies are refused, correct ones pass
# --------------------------------------------------------------------------------------------------

SSH_KEYS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+x/y= user@host\nssh-rsa AAAAB3Nza== other@host\n"
SSH_ONCE = (  # `jq -sRr @uri`
    "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIB%2Bx%2Fy%3D%20user%40host%0Assh-rsa%20AAAAB3Nza%3D%3D%20other%40host%0A"
)


def test_seed_post_clone_config_form_is_rejected(schema: Schema) -> None:
    body = f"cores=2&memory=4096&net0=virtio,bridge=vmbr0&ipconfig0=ip=dhcp&ciuser=ubuntu&sshkeys={SSH_ONCE}"
    errors = errors_of(schema, "PUT", "/nodes/pve1/qemu/101/config", body)
    assert errors == {
        "net0": "invalid format - duplicate key in comma-separated list property: model\n",
        "ipconfig0": "invalid format - value without key, but schema does not define a default key\n",
        "sshkeys": f"invalid format - invalid urlencoded string: {SSH_KEYS}\n",
    }


def test_seed_post_clone_config_correctly_encoded_passes(schema: Schema) -> None:
    from urllib.parse import quote, urlencode

    once = quote(SSH_KEYS, safe="")
    assert once == SSH_ONCE
    body = urlencode(
        {
            "cores": "2",
            "memory": "4096",
            "net0": "virtio,bridge=vmbr0",
            "ipconfig0": "ip=dhcp",
            "ciuser": "ubuntu",
            "sshkeys": once,
        }
    )
    for method in ("PUT", "POST"):
        assert request(schema, method, "/nodes/pve1/qemu/101/config", body) == {
            "node": "pve1",
            "vmid": 101,
            "cores": 2,
            "memory": "4096",
            "net0": "virtio,bridge=vmbr0",
            "ipconfig0": "ip=dhcp",
            "ciuser": "ubuntu",
            "sshkeys": once,
        }


def test_seed_resize_plus_becomes_space(schema: Schema) -> None:
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/resize", "disk=scsi0&size=+10G") == {
        "size": "value does not match the regex pattern"
    }
    assert request(schema, "PUT", "/nodes/pve1/qemu/100/resize", "disk=scsi0&size=%2B10G") == {
        "node": "pve1",
        "vmid": 100,
        "disk": "scsi0",
        "size": "+10G",
    }
    for size in ("50G", "%2B512M", "10737418240", "1.5T"):
        request(schema, "PUT", "/nodes/pve1/qemu/100/resize", f"disk=scsi0&size={size}")
    for size in ("10GB", "-5G", "G"):
        assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/resize", f"disk=scsi0&size={size}") == {
            "size": "value does not match the regex pattern"
        }


def test_resize_disk_enum_and_required(schema: Schema) -> None:
    errors = errors_of(schema, "PUT", "/nodes/pve1/qemu/100/resize", "disk=unused0&digest=" + "a" * 41)
    assert errors["size"] == MISSING
    assert errors["digest"] == "value may only be 40 characters long"
    assert errors["disk"].startswith("value 'unused0' does not have a value in the enumeration 'ide0, ide1, ide2, ide3, scsi0, ")
    assert errors["disk"].endswith(", efidisk0, tpmstate0'")
    assert "virtio15, sata0" in errors["disk"]


# --------------------------------------------------------------------------------------------------
# core checks and their exact messages
# --------------------------------------------------------------------------------------------------


def test_simple_read_endpoints(schema: Schema) -> None:
    assert request(schema, "GET", "/version") == {}
    assert request(schema, "GET", "/cluster/status") == {}
    assert request(schema, "GET", "/nodes") == {}
    assert request(schema, "GET", "/nodes/pve1/status") == {"node": "pve1"}
    # properties => {} was dropped from the dump; unknown parameters are still refused
    assert errors_of(schema, "GET", "/version", query="foo=1") == {"foo": NOT_IN_SCHEMA}
    assert errors_of(schema, "GET", "/nodes", query="node=pve1") == {"node": NOT_IN_SCHEMA}


def test_node_name_format(schema: Schema) -> None:
    assert errors_of(schema, "GET", "/nodes/foo_bar/status") == {
        "node": "invalid format - value does not look like a valid node name\n"
    }
    assert errors_of(schema, "GET", "/nodes/-pve/qemu") == {
        "node": "invalid format - value does not look like a valid node name\n"
    }


def test_cluster_resources_type_enum(schema: Schema) -> None:
    for value in ("vm", "storage", "node", "sdn"):
        assert request(schema, "GET", "/cluster/resources", query=f"type={value}") == {"type": value}
    for value in ("qemu", "pool", "lxc", "network", "VM"):
        assert errors_of(schema, "GET", "/cluster/resources", query=f"type={value}") == {
            "type": f"value '{value}' does not have a value in the enumeration 'vm, storage, node, sdn'"
        }


def test_cluster_nextid_vmid(schema: Schema) -> None:
    assert request(schema, "GET", "/cluster/nextid") == {}
    assert request(schema, "GET", "/cluster/nextid", query="vmid=105") == {"vmid": 105}
    assert errors_of(schema, "GET", "/cluster/nextid", query="vmid=abc") == {
        "vmid": "type check ('integer') failed - got 'abc'"
    }
    # the pve-vmid format runs before minimum/maximum, so a small id fails the format
    for value in ("50", "0100", "%2B100", "1000000000"):
        assert errors_of(schema, "GET", "/cluster/nextid", query=f"vmid={value}") == {
            "vmid": "invalid format - value does not look like a valid VM ID\n"
        }


def test_vmid_path_param(schema: Schema) -> None:
    assert errors_of(schema, "GET", "/nodes/pve1/qemu/abc/status/current") == {
        "vmid": "type check ('integer') failed - got 'abc'"
    }
    assert errors_of(schema, "GET", "/nodes/pve1/qemu/99/status/current") == {
        "vmid": "invalid format - value does not look like a valid VM ID\n"
    }
    assert request(schema, "GET", "/nodes/pve1/qemu/100/status/current") == {"node": "pve1", "vmid": 100}
    assert request(schema, "GET", "/nodes/pve1/qemu/100") == {"node": "pve1", "vmid": 100}
    assert request(schema, "GET", "/nodes/pve1/qemu/100/pending") == {"node": "pve1", "vmid": 100}
    assert request(schema, "GET", "/nodes/pve1/qemu/100/agent/network-get-interfaces") == {
        "node": "pve1",
        "vmid": 100,
    }


def test_boolean_accepts_only_0_and_1(schema: Schema) -> None:
    assert request(schema, "GET", "/nodes/pve1/qemu", query="full=1") == {"node": "pve1", "full": 1}
    assert request(schema, "GET", "/nodes/pve1/qemu", query="full=0") == {"node": "pve1", "full": 0}
    for value in ("yes", "true", "on", "no", "false", "off", "2", ""):
        assert errors_of(schema, "GET", "/nodes/pve1/qemu", query=f"full={value}") == {
            "full": f"type check ('boolean') failed - got '{value}'"
        }


def test_vm_delete_parameters(schema: Schema) -> None:
    query = "purge=1&destroy-unreferenced-disks=1&skiplock=0"
    assert request(schema, "DELETE", "/nodes/pve1/qemu/100", query=query) == {
        "node": "pve1",
        "vmid": 100,
        "purge": 1,
        "destroy-unreferenced-disks": 1,
        "skiplock": 0,
    }
    assert errors_of(schema, "DELETE", "/nodes/pve1/qemu/100", query="purge=yes&force=1") == {
        "purge": "type check ('boolean') failed - got 'yes'",
        "force": NOT_IN_SCHEMA,
    }


@pytest.mark.parametrize("action", ["start", "shutdown", "stop", "reboot"])
def test_power_actions(schema: Schema, action: str) -> None:
    path = f"/nodes/pve1/qemu/100/status/{action}"
    assert request(schema, "POST", path, "timeout=30") == {"node": "pve1", "vmid": 100, "timeout": 30}
    assert errors_of(schema, "POST", path, "timeout=-1") == {"timeout": "value must have a minimum value of 0"}
    assert errors_of(schema, "POST", path, "timeout=1.5") == {"timeout": "type check ('integer') failed - got '1.5'"}
    if action == "reboot":
        assert errors_of(schema, "POST", path, "skiplock=1") == {"skiplock": NOT_IN_SCHEMA}
    else:
        assert request(schema, "POST", path, "skiplock=1")["skiplock"] == 1


def test_stop_overrule_shutdown_and_start_extras(schema: Schema) -> None:
    assert request(schema, "POST", "/nodes/pve1/qemu/100/status/stop", "overrule-shutdown=1")["overrule-shutdown"] == 1
    assert request(schema, "POST", "/nodes/pve1/qemu/100/status/shutdown", "forceStop=1&keepActive=0")["forceStop"] == 1
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/status/start", "migration_type=fast") == {
        "migration_type": "value 'fast' does not have a value in the enumeration 'secure, insecure'"
    }
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/status/start", "migration_network=10.0.0.0") == {
        "migration_network": "invalid format - value does not look like a valid CIDR network\n"
    }
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/status/start", "stateuri=" + "x" * 129) == {
        "stateuri": "value may only be 128 characters long"
    }
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/status/start", "nets-host-mtu=net0%3D1500%2Cx") == {
        "nets-host-mtu": "value does not match the regex pattern"
    }
    assert request(schema, "POST", "/nodes/pve1/qemu/100/status/start", "nets-host-mtu=net0%3D1500")


def test_clone(schema: Schema) -> None:
    body = "newid=123&name=web01&full=1&storage=local-lvm&target=pve2&pool=prod&format=qcow2&snapname=before_up"
    assert request(schema, "POST", "/nodes/pve1/qemu/9000/clone", body) == {
        "node": "pve1",
        "vmid": 9000,
        "newid": 123,
        "name": "web01",
        "full": 1,
        "storage": "local-lvm",
        "target": "pve2",
        "pool": "prod",
        "format": "qcow2",
        "snapname": "before_up",
    }
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/9000/clone", "name=web01") == {"newid": MISSING}
    errors = errors_of(
        schema,
        "POST",
        "/nodes/pve1/qemu/9000/clone",
        "newid=101&name=web_01&storage=1bad&target=a.b&pool=x/y/z/w&format=vdi&snapname=1x&bwlimit=-1",
    )
    assert errors == {
        "name": "invalid format - value does not look like a valid DNS name\n",
        "storage": "invalid format - storage ID '1bad' contains illegal characters\n",
        "target": "invalid format - value does not look like a valid node name\n",
        "pool": "invalid format - pool name 'x/y/z/w' contains invalid characters\n",
        "format": "value 'vdi' does not have a value in the enumeration 'raw, qcow2, vmdk'",
        "snapname": "invalid format - invalid configuration ID '1x'\n",
        "bwlimit": "value must have a minimum value of 0",
    }


def test_config_get(schema: Schema) -> None:
    assert request(schema, "GET", "/nodes/pve1/qemu/100/config", query="current=1") == {
        "node": "pve1",
        "vmid": 100,
        "current": 1,
    }
    assert errors_of(schema, "GET", "/nodes/pve1/qemu/100/config", query="snapshot=a b") == {
        "snapshot": "invalid format - invalid configuration ID 'a b'\n"
    }


def test_config_update_valid_values(schema: Schema) -> None:
    body = (
        "cores=4&sockets=1&memory=2048&name=web01.example.com&protection=1&onboot=1"
        "&tags=web%3Bprod&delete=ide2,unused0%20serial0&digest=0123456789abcdef0123456789abcdef01234567"
        "&net0=virtio%3DBC:24:11:12:34:56%2Cbridge%3Dvmbr0%2Cfirewall%3Don%2Ctag%3D10%2Cmtu%3D1500"
        "&net1=e1000%2Cbridge%3Dvmbr1%2Crate%3D12.5%2Ctrunks%3D10%3B20-30"
        "&ipconfig0=ip%3D192.168.1.10%2F24%2Cgw%3D192.168.1.1"
        "&ipconfig1=ip%3Ddhcp%2Cip6%3Dauto"
        "&ipconfig2=ip6%3D2001%3Adb8%3A%3A10%2F64%2Cgw6%3D2001%3Adb8%3A%3A1"
        "&scsi0=local-lvm%3Avm-100-disk-0%2Cdiscard%3Don%2Cssd%3D1&ide2=none%2Cmedia%3Dcdrom"
        "&ciuser=ubuntu&cipassword=secret&searchdomain=example.com&nameserver=1.1.1.1"
    )
    res = request(schema, "PUT", "/nodes/pve1/qemu/100/config", body)
    assert res["cores"] == 4 and res["protection"] == 1 and res["memory"] == "2048"
    assert res["tags"] == "web;prod"
    assert res["delete"] == "ide2,unused0 serial0"
    assert res["net1"] == "e1000,bridge=vmbr1,rate=12.5,trunks=10;20-30"


def test_config_update_error_texts(schema: Schema) -> None:
    body = (
        "cores=0&memory=8&name=web_01&protection=yes&bogus=1&tags=ok%3Bb%40d&delete=a%2Cnet0"
        "&net0=bridge%3Dvmbr0"
        "&net1=virtio%2Cbogus%3D1"
        "&net2=virtio%3D01:00:00:00:00:00"
        "&net3=e1000%3DBC:24:11:00:00:01%2Cvirtio"
        "&net4=virtio%2Cbridge%3D"
        "&net5=virtio%2Ctag%3D5000%2Cfirewall%3Dmaybe"
        "&ipconfig0=gw%3D10.0.0.1"
        "&ipconfig1=ip%3D10.0.0.5"
        "&ipconfig2=ip%3D10.0.0.5%2F24%2Cgw%3D10.0.0.300"
        "&sshkeys=ssh-ed25519+AAAA"
    )
    errors = errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", body)
    assert errors == {
        "cores": "value must have a minimum value of 1",
        "memory": "invalid format - format error\nmemory.current: value must have a minimum value of 16\n",
        "name": "invalid format - value does not look like a valid DNS name\n",
        "protection": "type check ('boolean') failed - got 'yes'",
        "bogus": NOT_IN_SCHEMA,
        "tags": "invalid format - invalid characters in tag\n",
        "delete": "invalid format - invalid configuration ID 'a'\n",
        "net0": "invalid format - format error\nnet0.model: property is missing and it is not optional\n",
        "net1": "invalid format - invalid key in comma-separated list property: bogus\n",
        "net2": "invalid format - format error\n"
        "net2.macaddr: invalid format - value does not look like a valid unicast MAC address\n\n",
        "net3": "invalid format - duplicate key in comma-separated list property: model\n",
        "net4": "invalid format - missing key in comma-separated list property\n",
        "net5": "invalid format - format error\n"
        "net5.firewall: type check ('boolean') failed - got 'maybe'\n"
        "net5.tag: value must have a maximum value of 4094\n",
        "ipconfig0": "invalid format - format error\nipconfig0.ip: missing property - 'ipconfig0.gw' requires this property\n",
        "ipconfig1": "invalid format - format error\n"
        "ipconfig1.ip: invalid format - value does not look like a valid ipv4 network configuration\n\n",
        "ipconfig2": "invalid format - format error\n"
        "ipconfig2.gw: invalid format - value does not look like a valid IPv4 address\n\n",
        "sshkeys": "invalid format - invalid urlencoded string: ssh-ed25519 AAAA\n",
    }


def test_config_memory_property_string(schema: Schema) -> None:
    assert request(schema, "PUT", "/nodes/pve1/qemu/100/config", "memory=current%3D4096")["memory"] == "current=4096"
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", "memory=4G") == {
        "memory": "invalid format - format error\nmemory.current: type check ('integer') failed - got '4G'\n"
    }


def test_config_disk_volume_formats(schema: Schema) -> None:
    assert request(schema, "PUT", "/nodes/pve1/qemu/100/config", "scsi1=local-lvm%3A32")["scsi1"] == "local-lvm:32"
    assert request(schema, "PUT", "/nodes/pve1/qemu/100/config", "ide2=cdrom")["ide2"] == "cdrom"
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", "scsi1=nostorage") == {
        "scsi1": "invalid format - format error\n"
        "scsi1.file: invalid format - unable to parse volume ID 'nostorage'\n\n"
    }


def test_config_post_has_async_extras(schema: Schema) -> None:
    assert request(schema, "POST", "/nodes/pve1/qemu/100/config", "background_delay=5")["background_delay"] == 5
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", "background_delay=5") == {
        "background_delay": NOT_IN_SCHEMA
    }
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/config", "background_delay=31") == {
        "background_delay": "value must have a maximum value of 30"
    }


def test_config_requires(schema: Schema) -> None:
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", "force=1") == {
        "delete": "missing property - 'force' requires this property"
    }
    assert request(schema, "PUT", "/nodes/pve1/qemu/100/config", "force=1&delete=unused0")["force"] == 1


def test_migrate(schema: Schema) -> None:
    assert request(schema, "GET", "/nodes/pve1/qemu/100/migrate", query="target=pve2") == {
        "node": "pve1",
        "vmid": 100,
        "target": "pve2",
    }
    body = "target=pve2&online=1&with-local-disks=1&bwlimit=1000&targetstorage=local-lvm%3Aceph%2Cfast"
    assert request(schema, "POST", "/nodes/pve1/qemu/100/migrate", body)["with-local-disks"] == 1
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/migrate", "online=1") == {"target": MISSING}
    assert errors_of(schema, "POST", "/nodes/pve1/qemu/100/migrate", "target=pve2&targetstorage=ceph%3A1bad") == {
        "targetstorage": "invalid format - entry 'ceph:1bad' contains invalid ID - "
        "storage ID '1bad' contains illegal characters\n\n\n"
    }


def test_tasks_list(schema: Schema) -> None:
    query = "start=0&limit=50&vmid=100&source=all&errors=1&statusfilter=ok,error&typefilter=qmstart&since=0"
    assert request(schema, "GET", "/nodes/pve1/tasks", query=query) == {
        "node": "pve1",
        "start": 0,
        "limit": 50,
        "vmid": 100,
        "source": "all",
        "errors": 1,
        "statusfilter": "ok,error",
        "typefilter": "qmstart",
        "since": 0,
    }
    assert errors_of(schema, "GET", "/nodes/pve1/tasks", query="source=old&statusfilter=ok,bad") == {
        "source": "value 'old' does not have a value in the enumeration 'archive, active, all'",
        "statusfilter": "invalid format - invalid status 'bad'\n",
    }


def test_access_permissions(schema: Schema) -> None:
    assert request(schema, "GET", "/access/permissions", query="path=/vms/100&userid=ops@pve!ci") == {
        "path": "/vms/100",
        "userid": "ops@pve!ci",
    }
    assert errors_of(schema, "GET", "/access/permissions", query="userid=root") == {
        "userid": "value does not match the regex pattern"
    }


def test_node_storage(schema: Schema) -> None:
    assert request(schema, "GET", "/nodes/pve1/storage", query="content=images,rootdir&enabled=1") == {
        "node": "pve1",
        "content": "images,rootdir",
        "enabled": 1,
    }
    assert errors_of(schema, "GET", "/nodes/pve1/storage", query="content=images,disks&storage=a") == {
        "content": "invalid format - invalid content type 'disks'\n",
        "storage": "invalid format - storage ID 'a' contains illegal characters\n",
    }


def test_all_errors_are_collected(schema: Schema) -> None:
    errors = errors_of(schema, "POST", "/nodes/bad_node/qemu/1/clone", "full=2&x=1")
    assert errors == {
        "node": "invalid format - value does not look like a valid node name\n",
        "vmid": "invalid format - value does not look like a valid VM ID\n",
        "full": "type check ('boolean') failed - got '2'",
        "newid": MISSING,
        "x": NOT_IN_SCHEMA,
    }


# --------------------------------------------------------------------------------------------------
# JSON bodies and repeated form keys
# --------------------------------------------------------------------------------------------------


def test_json_typed_values(schema: Schema) -> None:
    path = "/nodes/pve1/qemu/100/config"
    assert validate_json(schema, "PUT", path, {"cores": 2, "protection": True, "memory": 2048, "name": 123}) == {
        "cores": 2,
        "protection": 1,
        "memory": "2048",
        "name": "123",
        "node": "pve1",
        "vmid": 100,
    }
    assert validate_json(schema, "PUT", path, {"onboot": False, "cpulimit": 1.5})["cpulimit"] == 1.5
    assert validate_json(schema, "PUT", path, {"protection": 1.0})["protection"] == 1
    with pytest.raises(ParamError) as info:
        validate_json(schema, "PUT", path, {"cores": True, "sockets": 1.5, "name": ["a"], "tags": {"a": 1}})
    assert info.value.errors == {
        "cores": "type check ('integer') failed - got JSON::PP::Boolean",
        "sockets": "type check ('integer') failed - got '1.5'",
        "name": "type check ('string') failed - got ARRAY",
        "tags": "type check ('string') failed - got HASH",
    }


def test_null_counts_as_absent(schema: Schema) -> None:
    endpoint, _ = schema.match("POST", "/nodes/pve1/qemu/100/clone")  # type: ignore[misc]
    with pytest.raises(ParamError) as info:
        schema.validate(endpoint, {"node": "pve1", "vmid": "100", "newid": None})
    assert info.value.errors == {"newid": MISSING}
    assert schema.validate(endpoint, {"node": "pve1", "vmid": "100", "newid": "101", "name": None}) == {
        "node": "pve1",
        "vmid": 100,
        "newid": 101,
        "name": None,
    }


def test_repeated_form_keys_join_with_nul(schema: Schema) -> None:
    # list formats split at NUL, so a repeated `delete` works; a scalar gets the joined value
    assert request(schema, "PUT", "/nodes/pve1/qemu/100/config", "delete=ide2&delete=net1")["delete"] == "ide2\0net1"
    assert errors_of(schema, "PUT", "/nodes/pve1/qemu/100/config", "cores=1&cores=2") == {
        "cores": "type check ('integer') failed - got '1\x002'"
    }


# --------------------------------------------------------------------------------------------------
# returns
# --------------------------------------------------------------------------------------------------


def test_check_returns(schema: Schema) -> None:
    nextid, _ = schema.match("GET", "/cluster/nextid")  # type: ignore[misc]
    assert nextid.info["returns"]["type"] == "integer"
    assert schema.check_returns(nextid, 100) == []
    assert schema.check_returns(nextid, "100") == ["data: str where integer expected"]
    log, _ = schema.match("GET", "/nodes/pve1/tasks/UPID:x/log")  # type: ignore[misc]
    assert schema.check_returns(log, [{"n": 1, "t": "TASK OK"}]) == []
    assert schema.check_returns(log, [{"n": 1}, {"n": "2", "t": "x"}]) == [
        "data[0].t: required property missing",
        "data[1].n: str where integer expected",
    ]
    start, _ = schema.match("POST", "/nodes/pve1/qemu/100/status/start")  # type: ignore[misc]
    assert schema.check_returns(start, "UPID:pve1:...") == []
    assert schema.check_returns(start, None) == ["data: null where string expected"]
    delete_task, _ = schema.match("DELETE", "/nodes/pve1/tasks/UPID:x")  # type: ignore[misc]
    assert schema.check_returns(delete_task, None) == []

