"""Exceptions. Each names the offending value and what was expected."""


class MicroturnError(Exception):
    """Base class for every error microturn raises on purpose."""


class ConfigError(MicroturnError, ValueError):
    """A config file or dataclass has an unknown key or an invalid value."""


class InputError(MicroturnError, ValueError):
    """Media or text handed to the streams does not fit the layout."""


class CheckpointError(MicroturnError):
    """A checkpoint is corrupt, not safetensors, or from another config."""


class PoolFullError(MicroturnError):
    """Every KV slot is taken; no new session can be admitted."""
