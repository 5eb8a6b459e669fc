"""zaqar: a multi-tenant messaging service wire-compatible with OpenStack Zaqar v2."""

__version__ = "0.1.0"
