"""Error hierarchy: one class per way things go wrong, each says when it is raised."""


class StreamerError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StreamerError):
    """Raised when the environment holds an invalid setting; the message names the variable."""

    def __init__(self, variable: str, rule: str) -> None:
        super().__init__(f"{variable}: {rule}")
        self.variable = variable
        self.rule = rule


class UsageError(StreamerError):
    """Raised when a command is asked for something it refuses without an explicit flag (exit 2)."""


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


class ConfigErrors(ConfigError):
    """Raised when several settings are invalid at once; `errors` holds one ConfigError each.

    It reads as its first error (`variable`, `rule`) to code that expects one; its text is
    every error joined by "; " (one log line), the CLI prints one line per error.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__(errors[0].variable, errors[0].rule)
        self.errors = errors
        self.args = ("; ".join(str(e) for e in errors),)


def raise_all(errors: list[ConfigError]) -> None:
    """Raise nothing, the one error, or all of them together."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors([e for err in errors for e in getattr(err, "errors", [err])])
