"""A simulated cluster for third-party clients: loopback, free ports, no HTTP proxy from the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pvectl.sim.cluster import Cluster

_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@contextmanager
def served(**kw: Any) -> Iterator[Cluster]:
    """`Cluster(**kw)` on 127.0.0.1 with OS-chosen ports; requests-based clients must not send loopback
    traffic to a proxy named in the environment."""
    saved = {k: os.environ.pop(k) for k in _PROXY_VARS if k in os.environ}
    try:
        with Cluster(bind="127.0.0.1", port=0, **kw) as c:
            yield c
    finally:
        os.environ.update(saved)
