"""Errors of the hardware abstraction layer: one root, leaves that also derive from a built-in."""


class HalError(Exception):
    """Root of every error raised by hal/."""


class ProfileError(HalError, ValueError):
    """A hardware profile is malformed: names the key, the value found and what was expected."""


class BackendNotFound(HalError, LookupError):
    """No backend of that name is registered for the device kind."""


class DeviceUnavailable(HalError, OSError):
    """The device could not be opened or stopped working (absent, busy, unplugged)."""


class UnsupportedControl(HalError, NotImplementedError):
    """The backend lacks a capability the caller asked for, e.g. ``v4l2: no autofocus``."""


class DeviceClosed(HalError, RuntimeError):
    """An operation was attempted on a device after close()."""
