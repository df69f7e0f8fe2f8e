"""Errors raised by the provisioning agent and service.

One root, ``ProvisioningError``; leaves also derive from the fitting built-in so callers
can catch either.
"""
from __future__ import annotations


class ProvisioningError(Exception):
    """Root of every provisioning error."""


class ConfigRejected(ProvisioningError, ValueError):
    """A configuration document or setting was refused; the running config is untouched."""


class CommandRejected(ProvisioningError, ValueError):
    """A signed command was refused (bad signature, expired, replayed, not for this box)."""


class EnrolmentError(ProvisioningError, RuntimeError):
    """Enrolment failed: rejected by an admin, code expired, or the service said no."""


class EnrolmentRevoked(EnrolmentError):
    """The service no longer accepts this box's certificate (an admin removed it)."""


class DiscoveryError(ProvisioningError, LookupError):
    """No usable provisioning service was found, or its CA did not match the pin."""


class ServiceError(ProvisioningError, RuntimeError):
    """The service answered with an unexpected status; the message carries its body."""
