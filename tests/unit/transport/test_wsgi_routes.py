"""The HTTP route table against the API layer's operation table."""

from __future__ import annotations

from zaqar.api.api import Api  # noqa: F401  (fills the operation table)
from zaqar.api.operations import OPERATIONS
from zaqar.transport.wsgi import routes


def test_every_operation_is_reachable_over_http():
    routed = {a for methods in routes.ROUTES.values() for a in methods.values()}
    routed |= set(routes.VARIANTS.values())
    assert set(OPERATIONS) - routed == set()


def test_every_route_names_a_real_operation():
    routed = {a for methods in routes.ROUTES.values() for a in methods.values()}
    assert routed - set(OPERATIONS) == set()
    assert set(routes.SPECS) - set(OPERATIONS) == set()
