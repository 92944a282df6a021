"""User-facing errors: each one names the problem and the fix in one paragraph."""


class PipelineError(Exception):
    """Base for errors caused by the user's config or data, reported without a traceback."""


class ConfigError(PipelineError):
    """A config value is missing, of the wrong type or out of range."""


class DataError(PipelineError):
    """A dataset cannot be read, generated or windowed as configured."""


def invalid_value(key: str, expected: str, got) -> ConfigError:
    """Build the Keras-style message: name the key, what was expected and what was received."""
    return ConfigError(f"Received an invalid value for `{key}`: expected {expected}, got {got!r}.")
