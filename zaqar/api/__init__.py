"""The transport-agnostic API layer: every transport calls ``Api.handle``.

This package imports neither falcon nor ws4py.
"""

from zaqar.api.api import Api
from zaqar.api.context import Context
from zaqar.api.errors import ApiError
from zaqar.api.request import Request, Response
from zaqar.api.settings import Features, Limits

__all__ = ["Api", "ApiError", "Context", "Features", "Limits", "Request", "Response"]
