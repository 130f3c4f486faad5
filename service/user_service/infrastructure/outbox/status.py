"""What the relay knows about the broker, for readiness and metrics."""

from enum import StrEnum


class BrokerState(StrEnum):
    OK = "ok"
    DOWN = "down"
    DISABLED = "disabled"


class RelayStatus:
    def __init__(self, enabled: bool) -> None:
        self.broker = BrokerState.DOWN if enabled else BrokerState.DISABLED
        self.active = False
