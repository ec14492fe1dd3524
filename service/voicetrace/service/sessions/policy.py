"""`SessionPolicy`: the limits and replica identity one `SessionStore` enforces.

Built from `Settings` by the app (`SessionPolicy.from_settings`); tests build it directly. The store
reads nothing else: no globals, no environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from voicetrace.service.settings import Settings, random_instance_id


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    # This process's name among the replicas sharing the database.
    instance_id: str = field(default_factory=random_instance_id)
    # How long a replica's sessions stay its own without a heartbeat.
    lease_s: float = 30.0
    # A session nobody connects to within this time is ENDED (`connect_timeout`).
    connect_timeout_s: float = 180.0
    # Per user: sessions holding a voice bridge (LIVE or PAUSED), and not yet connected ones.
    max_live_per_user: int = 10
    max_open_per_user: int = 10

    def __post_init__(self) -> None:
        if not self.instance_id or len(self.instance_id) > 64:
            raise ValueError("instance_id must be 1 to 64 characters")
        if self.lease_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("lease_s and connect_timeout_s must be positive")
        if self.max_live_per_user < 1 or self.max_open_per_user < 1:
            raise ValueError("per-user session limits must be at least 1")

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_s)

    @property
    def connect_timeout(self) -> timedelta:
        return timedelta(seconds=self.connect_timeout_s)

    @property
    def heartbeat_interval_s(self) -> float:
        """Renew three times per lease: one missed beat never costs a replica its sessions."""
        return self.lease_s / 3

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(
            instance_id=settings.instance_id,
            lease_s=settings.session_lease_s,
            connect_timeout_s=settings.session_connect_timeout_s,
            max_live_per_user=settings.max_live_sessions_per_user,
            max_open_per_user=settings.max_open_sessions_per_user,
        )
