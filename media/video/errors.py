"""Errors of the video pipeline: one root, leaves that also derive from a fitting built-in."""


class VideoError(Exception):
    """Root of every error raised by media.video."""


class VideoConfigError(VideoError, ValueError):
    """Video config is malformed: names the key, the value found and what was expected."""


class EncoderUnavailable(VideoError, RuntimeError):
    """An H.264 encoder backend cannot be used on this box (absent, fails to open or encode)."""


class NoEncoderAvailable(EncoderUnavailable):
    """Every backend in the chain failed; the message lists each one's reason."""


class CodecNotNegotiated(VideoError, RuntimeError):
    """The remote peer did not accept H.264 for our video; sending would be garbage."""
