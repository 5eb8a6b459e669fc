"""Transports: thin adapters that decode input, call ``Api.handle`` and encode the response."""
