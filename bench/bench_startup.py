"""Cold start: `pvectl --help` and `pvectl -o json vm list` against the seed's `curl | jq` pipeline and peers.

    .venv/bin/python bench/bench_startup.py                  # ~2 minutes; appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_startup.py --rounds 10 --no-record     # quick look

Every measurement is a new process (fork + exec + the whole start-up) with a warm page cache and a
warm bytecode cache (`PYTHONDONTWRITEBYTECODE` is removed from the children's environment and every
command runs `--warmup` times before timing). The commands run round-robin - one of each per round,
the order rotated every round - so that load from other work on the machine hits all of them alike;
ratios are the median of the per-round ratios (each a pair measured back to back).

What runs:
- a simulator, `python -m pvectl.sim --bind 127.0.0.1 --port 0 --state-dir D --time-scale 0.05`, in
  the background (its `ready <config>` line gives the cluster-config.yaml it wrote);
- a real `pass` store: a throwaway GNUPGHOME with a passphrase-less key, a throwaway
  PASSWORD_STORE_DIR, the simulator's token inserted with `pass insert -m proxmox/api-token` on stdin;
  pvectl reads a copy of the simulator's config with `credentials: {pass_path: proxmox/api-token}`;
- pvectl's parsed-config cache (in a private XDG_CACHE_HOME) is warmed before timing;
- the seed's "List all VMs across the cluster" pipeline verbatim, except `--cacert CA` for `-k`
  (`pass show` runs twice, as in the seed);
- the Python peers' `--help` from their own venvs (made by bench/peers/setup.sh, outside the repo).

Targets: `pvectl --help` under 80 ms (DESIGN §3b); `pvectl -o json vm list` no slower than the seed's
pipeline. Also records `python -X importtime` for the `vm list` command (top entries and pvectl's own
modules). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PASS_PATH = "proxmox/api-token"
HELP_TARGET_MS = 80.0
LIST_TARGET_RATIO = 1.0   # `vm list` with the token in pass: at most the seed pipeline's time (DESIGN §3b said 1.25x)
PEERS = ("pvecontrol", "pmox")
# stdlib imports on pvectl's `vm list` path, timed as cold processes beside it (`--no-probes` to skip)
PROBES = ("re", "argparse", "subprocess", "ssl", "http.client", "pvectl.cli.main")
SEED_JQ = ('.data[] | {vmid, name, status, node, maxcpu: .maxcpu, '
           'maxmem: (.maxmem / 1073741824 | floor | tostring + "G"), template}')

_KEY_PARAMS = """\
%no-protection
Key-Type: eddsa
Key-Curve: ed25519
Key-Usage: sign
Subkey-Type: ecdh
Subkey-Curve: cv25519
Subkey-Usage: encrypt
Name-Real: pvectl bench throwaway
Name-Email: bench@pvectl.invalid
Expire-Date: 1d
%commit
"""


def peers_dir() -> Path:
    d = os.environ.get("PVECTL_PEERS_DIR")
    if d:
        return Path(d)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pvectl-bench" / "peers"


def pvectl_argv() -> list[str]:
    """The console script next to this interpreter (what a user runs), else `python -m`."""
    script = Path(sys.executable).parent / "pvectl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pvectl.cli.main"]


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def _run(argv: list[str], env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=120, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stderr}")
    return p


# -- set-up: simulator, pass store, configs ------------------------------------------------------


def start_sim(state_dir: Path, vms: int, env: dict[str, str], templates: int = 2) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-m", "pvectl.sim", "--bind", "127.0.0.1", "--port", "0",
                             "--state-dir", str(state_dir), "--time-scale", "0.05", "--vms", str(vms),
                             "--templates", str(templates)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready "):
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, Path(line[len("ready "):])


def make_pass_store(root: Path, token_text: str, env: dict[str, str]) -> dict[str, str]:
    gnupghome, store = root / "g", root / "s"
    gnupghome.mkdir(mode=0o700)
    env = dict(env, GNUPGHOME=str(gnupghome), PASSWORD_STORE_DIR=str(store))
    env.pop("GPG_AGENT_INFO", None)
    _run(["gpg", "--batch", "--quiet", "--gen-key"], env, input=_KEY_PARAMS)
    listing = _run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env).stdout
    fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
    _run(["pass", "init", fpr], env)
    _run(["pass", "insert", "-m", PASS_PATH], env, input=token_text)   # the secret on stdin only
    shown = _run(["pass", "show", PASS_PATH], env).stdout.splitlines()
    if shown[-1] != token_text.split()[-1]:
        raise SystemExit("pass show does not give back the token")
    return env


def write_pass_config(sim_config: Path, target: Path) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(sim_config.read_text(encoding="utf-8"))
    doc["credentials"] = {"pass_path": PASS_PATH, "ssh_user": doc["credentials"].get("ssh_user", "root")}
    target.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None), encoding="utf-8")
    # pvectl does not cache a config modified in the last 2 s; make it an old file
    old = time.time() - 60
    os.utime(target, (old, old))
    return doc


# -- timing ---------------------------------------------------------------------------------------


def time_once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{argv} exited {p.returncode}")
    return dt * 1000


def rounds(cmds: dict[str, list[str]], env: dict[str, str], n: int) -> dict[str, list[float]]:
    names = list(cmds)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(n):
        k = r % len(names)
        for name in names[k:] + names[:k]:           # rotate the order each round
            out[name].append(time_once(cmds[name], env))
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def paired_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def paired_delta(a: list[float], b: list[float]) -> float:
    return statistics.median(x - y for x, y in zip(a, b))


# -- import-time profile ------------------------------------------------------------------------


_IMPORT_RE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def importtime(argv: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Per-module medians over `runs` processes of `python -X importtime ...`."""
    per: dict[str, dict[str, list[float]]] = {}
    totals: list[float] = []
    depth: dict[str, int] = {}
    for _ in range(runs):
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        if p.returncode != 0:
            raise SystemExit(f"importtime run failed ({p.returncode}): {p.stderr[-2000:]}")
        total = 0.0
        for line in p.stderr.splitlines():
            m = _IMPORT_RE.match(line)
            if not m:
                continue
            self_us, cum_us, indent, mod = int(m.group(1)), int(m.group(2)), len(m.group(3)), m.group(4)
            level = (indent - 1) // 2
            d = per.setdefault(mod, {"self": [], "cum": []})
            d["self"].append(self_us / 1000)
            d["cum"].append(cum_us / 1000)
            depth[mod] = level
            if level == 0:
                total += cum_us / 1000
        totals.append(total)
    mods = {m: {"self": statistics.median(v["self"]), "cum": statistics.median(v["cum"]), "level": depth[m]}
            for m, v in per.items()}
    return {"total": statistics.median(totals), "mods": mods, "count": len(mods)}


# -- report -------------------------------------------------------------------------------------


def record(lines: list[str]) -> None:
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is written by the benchmark named in its title "
                           "(see bench/README.md for how to run them).\n", encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40, help="timed rounds, one run of each command per round (default 40)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs of each command first (default 3)")
    ap.add_argument("--vms", type=int, default=12, help="VMs in the simulated cluster (default 12, plus 2 templates)")
    ap.add_argument("--importtime-runs", type=int, default=9, help="processes for the import-time medians (default 9)")
    ap.add_argument("--no-peers", action="store_true", help="do not time the Python peers")
    ap.add_argument("--no-probes", action="store_true", help="do not time the single-import probes")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    for tool in ("curl", "jq", "pass", "gpg", "bash"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install {'gnupg' if tool == 'gpg' else tool})")

    t_start = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="pvb-", dir="/tmp"))      # short: gpg-agent's socket path
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONDONTWRITEBYTECODE", "PVECTL_CONFIG", "PVECTL_TOKEN_ID", "PVECTL_TOKEN_SECRET")
                and not k.lower().endswith("_proxy")}
    base_env["XDG_CACHE_HOME"] = str(root / "cache")
    sim = None
    env: dict[str, str] = base_env
    try:
        sim, sim_cfg = start_sim(root / "sim", args.vms, base_env)
        sd = sim_cfg.parent
        env = make_pass_store(root, (sd / "token").read_text(encoding="utf-8"), base_env)
        pass_cfg = root / "pass-config.yaml"
        doc = write_pass_config(sim_cfg, pass_cfg)
        node0 = doc["cluster"]["nodes"][0]
        ca = doc["tls"]["ca_file"]
        auth = f'PVEAPIToken=$(pass show {PASS_PATH} | head -1)=$(pass show {PASS_PATH} | tail -1)'
        seed = (f'curl -s --cacert {ca} -H "Authorization: {auth}" '
                f'"https://{node0["host"]}:{node0["port"]}/api2/json/cluster/resources?type=vm" | jq \'{SEED_JQ}\'')
        pv = pvectl_argv()
        cmds: dict[str, list[str]] = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "pvectl --help": pv + ["--help"],
            "pvectl -o json vm list": pv + ["--config", str(pass_cfg), "-o", "json", "vm", "list"],
            "pvectl -o json vm list (token file)": pv + ["--config", str(sim_cfg), "-o", "json", "vm", "list"],
            "seed pipeline (curl, jq, 2x pass)": ["bash", "-c", seed],
            "pass show (one decryption)": ["pass", "show", PASS_PATH],
        }
        token_id, secret = (sd / "token").read_text(encoding="utf-8").split()[:2]
        nopass_env = f"PVEAPIToken={token_id}=$PVB_SECRET"
        seed_nopass = seed.replace(auth, nopass_env)
        if not args.no_probes:
            # where the time goes: the same rounds, so the numbers compare with the rows above
            cmds["curl + jq, token from the environment (no pass)"] = ["bash", "-c", seed_nopass]
            for mods in PROBES:
                cmds[f"python -c 'import {mods}'"] = [sys.executable, "-c", f"import {mods}"]
        peer_notes: dict[str, str] = {}
        if not args.no_peers:
            pdir = peers_dir()
            for peer in PEERS:
                exe = pdir / peer / "bin" / peer
                failed = pdir / f"{peer}.failed"
                if exe.exists() and subprocess.run([str(exe), "--help"], env=env, capture_output=True,
                                                   timeout=60, check=False).returncode == 0:
                    cmds[f"{peer} --help"] = [str(exe), "--help"]
                    peer_notes[peer] = tool_version([str(pdir / peer / "bin" / "python"), "-c",
                                                     f"import importlib.metadata as m; print(m.version('{peer}'))"])
                elif failed.exists():
                    peer_notes[peer] = "failed to install: " + " ".join(failed.read_text().split()[-30:])
                elif exe.exists():
                    peer_notes[peer] = "installed, but `--help` exits non-zero"
                else:
                    peer_notes[peer] = f"not installed (run `sh bench/peers/setup.sh`; looked in {pdir})"

        # correctness first: pvectl and the seed list the same guests; this run also fills the config cache
        out = subprocess.run(cmds["pvectl -o json vm list"], env=env, capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise SystemExit(f"pvectl vm list failed: {out.stderr}")
        ours = json.loads(out.stdout)
        seed_out = subprocess.run(cmds["seed pipeline (curl, jq, 2x pass)"], env=env, capture_output=True, text=True, timeout=60, check=False)
        seed_rows = [json.loads(x) for x in seed_out.stdout.replace("}\n{", "}\x00{").split("\x00") if x.strip()]
        if len(ours) != len(seed_rows) or not seed_rows:
            raise SystemExit(f"pvectl lists {len(ours)} guests, the seed {len(seed_rows)}")
        caches = sorted((root / "cache" / "pvectl").glob("config-*.json"))
        if not caches:
            raise SystemExit("pvectl did not write its config cache")
        print(f"simulator: {len(seed_rows)} guests, config cache warm ({len(caches)} file(s)); "
              f"{len(cmds)} commands x {args.rounds} rounds after {args.warmup} warm-up runs")
        env = dict(env, PVB_SECRET=secret)
        rounds(cmds, env, args.warmup)
        res = rounds(cmds, env, args.rounds)
        load_after = os.getloadavg()

        # import-time profile of the read command (console script, as a user runs it)
        it_argv = [sys.executable, "-X", "importtime"] + (pv if len(pv) == 1 else pv[1:])   # [script] or [-m, module]
        it_list = importtime(it_argv + ["--config", str(pass_cfg), "-o", "json", "vm", "list"], env,
                             args.importtime_runs)
        it_help = importtime(it_argv + ["--help"], env, args.importtime_runs)
    finally:
        if sim is not None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sim.kill()
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, timeout=30, check=False)
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in res.items()}
    seed_k = "seed pipeline (curl, jq, 2x pass)"
    ratio_list = paired_ratio(res["pvectl -o json vm list"], res[seed_k])
    help_ok = med["pvectl --help"] < HELP_TARGET_MS
    list_ok = ratio_list <= LIST_TARGET_RATIO
    baselines = {
        "pvectl --help": ("python -c pass", None),
        "pvectl -o json vm list": (seed_k, LIST_TARGET_RATIO),
        "pvectl -o json vm list (token file)": (seed_k, None),
        "pass show (one decryption)": (seed_k, None),
        "curl + jq, token from the environment (no pass)": (seed_k, None),
    }
    for peer in PEERS:
        if f"{peer} --help" in res:
            baselines[f"{peer} --help"] = ("pvectl --help", None)

    print()
    floor = res["python -c pass"]
    print(f"{'command':<52} {'median':>7} {'p25':>6} {'p75':>6} {'min':>6} {'-python':>8}   ratio (paired)")
    for name, xs in res.items():
        base = baselines.get(name)
        rtxt = ""
        if base and base[0] in res:
            rtxt = f"{paired_ratio(xs, res[base[0]]):.2f}x {base[0]}"
        print(f"{name:<52} {med[name]:7.1f} {pct(xs, .25):6.1f} {pct(xs, .75):6.1f} {min(xs):6.1f} "
              f"{paired_delta(xs, floor):8.1f}   {rtxt}")
    print(f"\npvectl --help: {med['pvectl --help']:.1f} ms ({'met' if help_ok else 'MISSED'} target < {HELP_TARGET_MS:g} ms)")
    print(f"pvectl -o json vm list / seed pipeline: {ratio_list:.2f}x ({'met' if list_ok else 'MISSED'} target <= {LIST_TARGET_RATIO}x)")
    top = sorted(it_list["mods"].items(), key=lambda kv: -kv[1]["cum"])[:15]
    ours = sorted(((m, v) for m, v in it_list["mods"].items() if m == "pvectl" or m.startswith("pvectl.")),
                  key=lambda kv: -kv[1]["self"])
    print(f"\nimport time, `vm list`: {it_list['total']:.1f} ms over {it_list['count']} modules; "
          f"`--help`: {it_help['total']:.1f} ms over {it_help['count']} modules")
    for m, v in top:
        print(f"  {'  ' * v['level']}{m:<40} cumulative {v['cum']:6.1f} ms  self {v['self']:5.1f} ms")
    own = ", ".join(f"{m} {v['self']:.1f}" for m, v in ours[:8])
    print(f"pvectl's own modules, self time: {sum(v['self'] for _, v in ours):.1f} ms ({own})")

    if not args.no_record:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        la = lambda t: " ".join(f"{x:.2f}" for x in t)
        import pvectl

        pass_ver = re.search(r"v(\d[\d.]*)", subprocess.run(["pass", "version"], capture_output=True, text=True, check=False).stdout)
        versions = [f"pvectl {pvectl.__version__}", f"Python {platform.python_version()}",
                    tool_version(["curl", "--version"]).split(" (")[0], tool_version(["jq", "--version"]),
                    tool_version(["gpg", "--version"]), f"pass {pass_ver.group(1) if pass_ver else '?'}",
                    tool_version(["bash", "--version"]).split(" (")[0]]
        versions += [f"{p} {v}" for p, v in peer_notes.items() if not v.startswith(("failed", "not", "installed"))]
        lines = [
            "## Start-up: `pvectl --help` and `pvectl -o json vm list` against the seed's pipeline and peers "
            "(bench/bench_startup.py)",
            "",
            f"{when} · {os.cpu_count()} CPUs · load average {la(load_before)} before, {la(load_after)} after "
            f"(1/5/15 min) · {args.rounds} rounds, each command once per round in rotated order, after "
            f"{args.warmup} warm-up runs · {' · '.join(versions)}",
            "",
            f"Cold process each run (fork + exec + start-up + work + exit), warm page cache, warm bytecode cache "
            f"(`PYTHONDONTWRITEBYTECODE` unset for the children). The simulator ({len(seed_rows)} guests, time scale "
            f"0.05) runs in the background on 127.0.0.1; the token comes from a real `pass` store (throwaway "
            f"GNUPGHOME, passphrase-less ed25519/cv25519 key, gpg-agent running). pvectl's config cache was warm "
            f"(one untimed run filled it before timing). The seed's pipeline is its \"List all VMs across the "
            f"cluster\" command verbatim with `--cacert` for `-k`, run by `bash -c` (two `pass show`). Ratios are "
            f"the median of per-round ratios (pairs measured back to back).",
            "",
            "| command | median ms | p25-p75 ms | min ms | minus `python -c pass` ms (paired) | ratio (paired, median) | target |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, xs in res.items():
            base = baselines.get(name)
            r = f"{paired_ratio(xs, res[base[0]]):.2f}x {base[0]}" if base and base[0] in res else ""
            target = ""
            if name == "pvectl --help":
                target = f"< {HELP_TARGET_MS:g} ms: {'met' if help_ok else 'MISSED'}"
            elif name == "pvectl -o json vm list":
                target = f"<= {LIST_TARGET_RATIO}x seed: {'met' if list_ok else 'MISSED'}"
            lines.append(f"| `{name}` | {med[name]:.1f} | {pct(xs, .25):.1f}-{pct(xs, .75):.1f} | {min(xs):.1f} | "
                         f"{paired_delta(xs, floor):.1f} | {r} | {target} |")
        for p, v in peer_notes.items():
            if v.startswith(("failed", "not", "installed")):
                lines.append(f"| `{p} --help` | - | - | - | - | - | {v} |")
        lines += [
            "",
            f"Import time (`python -X importtime <console script> --config ... -o json vm list`, per-module medians "
            f"of {args.importtime_runs} processes): {it_list['total']:.1f} ms in {it_list['count']} modules "
            f"(`--help`: {it_help['total']:.1f} ms in {it_help['count']} modules). Top 15 by cumulative time "
            f"(indent = nesting):",
            "",
            "| module | cumulative ms | self ms |",
            "|---|---|---|",
        ]
        for m, v in top:
            lines.append(f"| {'&nbsp;&nbsp;' * v['level']}`{m}` | {v['cum']:.1f} | {v['self']:.1f} |")
        lines += [
            "",
            f"pvectl's own modules, self time (sum {sum(v['self'] for _, v in ours):.1f} ms): "
            + ", ".join(f"`{m}` {v['self']:.1f}" for m, v in ours) + ".",
        ]
        record(lines)
        print(f"appended to {RESULTS}")
    print(f"took {time.monotonic() - t_start:.0f} s")
    return 0 if help_ok and list_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
