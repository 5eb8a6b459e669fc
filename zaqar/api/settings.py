"""Plain, frozen settings the API layer reads; built from oslo.config by bootstrap.

Keeping oslo.config out of ``zaqar.api`` lets tests build an Api from literal
values and keeps every limit in one typed place.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    default_message_ttl: int = 3600
    default_message_delay: int = 0
    default_claim_ttl: int = 300
    default_claim_grace: int = 60
    default_subscription_ttl: int = 3600
    max_queues_per_page: int = 20
    max_messages_per_page: int = 20
    max_subscriptions_per_page: int = 20
    max_messages_per_claim_or_pop: int = 20
    max_queue_metadata: int = 64 * 1024
    max_messages_post_size: int = 256 * 1024
    max_message_ttl: int = 1209600
    max_message_delay: int = 900
    max_claim_ttl: int = 43200
    max_claim_grace: int = 43200
    subscriber_types: tuple[str, ...] = ("http", "https", "mailto", "trust+http", "trust+https")
    max_flavors_per_page: int = 20
    max_pools_per_page: int = 20
    client_id_uuid_safe: str = "strict"
    min_length_client_id: int = 10
    max_length_client_id: int = 36
    message_delete_with_claim_id: bool = False

    @property
    def body_cap(self) -> int:
        """The largest body a transport reads: beyond it a request is refused by its size alone.

        Above every document limit, so each limit's own error text still
        answers a body just over it; the margin covers envelope and spacing.
        """
        return max(self.max_messages_post_size, self.max_queue_metadata) + 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Features:
    admin_mode: bool = False
    pooling: bool = False
    enable_checksum: bool = False

    @property
    def pool_admin(self) -> bool:
        """Pools and flavors exist only on an admin-mode, pooled server (http-v2.md §0.10)."""
        return self.admin_mode and self.pooling
