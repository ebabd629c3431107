"""`/access/ticket`: password logins, the routes part (users, tickets and CSRF tokens are
`backend.access.Access`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend.access import LoginFailed
from .wire import error_response

if TYPE_CHECKING:
    from .backend import Backend


class AccessRoutes:
    """`/access/ticket`, mixed into `routes.Api`."""

    backend: Backend
    ROUTES: dict[tuple[str, str], str] = {
        ("GET", "/access/ticket"): "ticket_get",
        ("POST", "/access/ticket"): "ticket_create",
    }

    def ticket_get(self, local: str, caller: Any, p: dict[str, Any]) -> Any:
        # get_ticket: "Dummy. Useful for formatters which want to provide a login page."
        return None

    def ticket_create(self, local: str, caller: Any, p: dict[str, Any]) -> Any:
        b = self.backend
        try:
            return b.access.login(p)
        except LoginFailed:
            # "do not return any info to prevent user enumeration attacks": 401 with a JSON body,
            # delayed like every 401 (AnyEvent.pm::handle_api2_request)
            resp = error_response(401, "authentication failure")
            resp.delay = b.scale(3)
            return resp
