#!/bin/sh
# Throwaway virtual environments for the Python peers timed by bench/bench_startup.py.
#
#     sh bench/peers/setup.sh            # creates them (a few minutes the first time), prints the directory
#
# They live OUTSIDE the repository, in ${PVECTL_PEERS_DIR:-${XDG_CACHE_HOME:-~/.cache}/pvectl-bench/peers},
# one venv per peer (pvecontrol, pmox), so that each peer's dependencies are its own and nothing ends up
# in a commit. Re-running keeps a venv whose console script already answers `--help`. A peer that fails
# to install leaves `<dir>/<peer>.failed` with pip's last lines; the benchmark records that.
set -u
PY=${PYTHON:-python3}
DIR=${PVECTL_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pvectl-bench/peers}
mkdir -p "$DIR"
for peer in pvecontrol pmox; do
    venv="$DIR/$peer"
    if [ -x "$venv/bin/$peer" ] && "$venv/bin/$peer" --help >/dev/null 2>&1; then
        echo "$peer: already installed in $venv"
        continue
    fi
    rm -rf "$venv" "$DIR/$peer.failed"
    if "$PY" -m venv "$venv" && "$venv/bin/python" -m pip install --quiet "$peer" >"$DIR/$peer.log" 2>&1 \
            && [ -x "$venv/bin/$peer" ]; then
        echo "$peer: installed in $venv ($("$venv/bin/python" -m pip show "$peer" 2>/dev/null | sed -n 's/^Version: //p'))"
    else
        tail -n 20 "$DIR/$peer.log" >"$DIR/$peer.failed" 2>/dev/null
        echo "$peer: FAILED to install (see $DIR/$peer.failed)"
    fi
done
echo "$DIR"
