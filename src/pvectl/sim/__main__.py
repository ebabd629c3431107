"""`python -m pvectl.sim` runs `pvectl sim serve`."""

from __future__ import annotations

from .serve import main

raise SystemExit(main())
