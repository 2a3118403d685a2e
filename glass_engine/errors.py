"""Exception types of the engine. Each message names the offending value and the fix."""


class GlassError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(GlassError):
    """A configuration value is invalid or unknown."""


class DatasetError(GlassError):
    """A dataset folder, image or mask cannot be used."""


class TextureError(GlassError):
    """The texture source for local anomaly synthesis is missing or empty."""


class WeightsNotFoundError(GlassError):
    """No pretrained backbone weights are available."""


class WeightsMismatchError(GlassError):
    """A weights file does not fit the chosen backbone architecture."""


class CheckpointError(GlassError):
    """A run folder or checkpoint is missing or unreadable."""


class OutputError(GlassError):
    """An output location cannot be written."""


class StoreError(GlassError):
    """The project database cannot be opened, read or written."""


class CancelledError(GlassError):
    """A long task stopped because the user cancelled it."""
