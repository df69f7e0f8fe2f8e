"""Errors of the audio processing package: one root, leaves that also derive from a built-in."""


class AudioError(Exception):
    """Root of every error raised by media/audio."""


class AudioConfigError(AudioError, ValueError):
    """An audio stage was configured with a value it cannot work with (names key and value)."""


class AudioInputError(AudioError, ValueError):
    """Audio handed to a stage or tool does not match what was expected (rate, channels, length)."""
