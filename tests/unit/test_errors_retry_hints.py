"""Which errors say "retry": a refusal or a bad argument never does, a node that did not answer does.
DeadlineExceeded: exit 4, a hint that depends on whether the cut request may have been applied, and a
caller's own hint kept as given."""

from __future__ import annotations

import pytest

from pvectl.errors import (ConfigError, CredentialError, DeadlineExceeded, GuardRefused, NodeUnreachable,
                           PvectlError, TlsError, UsageError)


@pytest.mark.parametrize("err", [PvectlError("operation failed"), ConfigError("no such cluster 'lab'"),
                                 CredentialError("token file unreadable"), UsageError("'x' is not KEY=VALUE"),
                                 GuardRefused("VM 100 is running"), TlsError("fingerprint mismatch")])
def test_errors_that_repeat_the_same_way_are_not_retryable(err: PvectlError) -> None:
    assert err.retryable is False


def test_a_node_that_did_not_answer_is_retryable_unless_a_write_may_have_landed() -> None:
    assert NodeUnreachable("no node reachable").retryable is True
    assert NodeUnreachable("POST cut", uncertain=True).retryable is False


def test_a_deadline_error_says_whether_the_request_may_have_been_applied() -> None:
    sent = DeadlineExceeded("POST /nodes/pve1/qemu/100/status/start: no answer before the deadline",
                            uncertain=True)
    unsent = DeadlineExceeded("GET /version: the deadline passed before the request could be sent")
    assert isinstance(sent, NodeUnreachable) and sent.exit_code == unsent.exit_code == 4
    assert sent.hint == "the request may have been applied: check the state before repeating it"
    assert unsent.hint == "nothing was changed by it; retry with a longer --timeout"
    assert sent.retryable and unsent.retryable


def test_a_deadline_error_keeps_the_hint_it_is_given() -> None:
    e = DeadlineExceeded("clone of web-01: no answer before the deadline", uncertain=True,
                         hint="resume with: pvectl task wait UPID:pve1:…")
    assert e.hint == "resume with: pvectl task wait UPID:pve1:…"
    assert e.uncertain and e.exit_code == 4
