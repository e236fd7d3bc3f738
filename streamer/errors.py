"""Error hierarchy: one class per way things go wrong, each says when it is raised."""


class StreamerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StreamerError):
    """Raised when the environment holds an invalid setting; the message names the variable."""

    def __init__(self, variable: str, rule: str) -> None:
        super().__init__(f"{variable}: {rule}")
        self.variable = variable
        self.rule = rule


class InvalidEvent(StreamerError):
    """Raised by the decoder when an event breaks the contract; `reason` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LockLost(StreamerError):
    """Raised when a fenced write finds the job lock held by someone else (or expired)."""


class StartError(StreamerError):
    """Raised when a command cannot start; the message names the variable or path at fault."""
