"""`pvectl sim serve`: the simulator's own command line (see pvectl.sim.serve)."""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from .context import Context


def serve(ctx: Context) -> int:
    from ..sim.serve import main

    return main(list(ctx.args.sim_args))
