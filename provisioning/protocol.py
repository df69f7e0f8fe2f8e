"""The wire contract between box and service: paths, constants, the activation code format.

Device calls (all JSON over HTTPS, TLS verified against the pinned CA):

``GET  /v1/ca.pem``         the CA certificate; the box checks it against its pinned fingerprint
``POST /v1/enrol``          {serial, csr, hardware_profile} ->
                            200 {status: "accepted", certificate, ca, config_key} (path A) or
                            202 {status: "pending", device_code, user_code, verification_uri,
                                 verification_uri_complete, expires_in, interval} (paths B, C)
``POST /v1/enrol/token``    {device_code} -> 200 as accepted above, or 400 {error} with
                            authorization_pending | slow_down | expired_token | access_denied
                            (RFC 8628 section 3.5)
``POST /v1/device/checkin`` (mutual TLS) {health, config_version, config_status,
                            command_results} -> {desired_config_version, next_checkin_s, commands}
``GET  /v1/device/config``  (mutual TLS) -> {document}: the signed config (JWS)

Admin calls live under ``/v1/admin/`` with ``Authorization: Bearer <token>``; see the OpenAPI
document at ``/openapi.json``.
"""
from __future__ import annotations

import secrets

API = "/v1"
CA_PATH = f"{API}/ca.pem"
ENROL_PATH = f"{API}/enrol"
TOKEN_PATH = f"{API}/enrol/token"
CHECKIN_PATH = f"{API}/device/checkin"
CONFIG_PATH = f"{API}/device/config"
ACTIVATE_PATH = "/activate"

CODE_TTL_S = 15 * 60
POLL_INTERVAL_S = 5.0
SLOW_DOWN_STEP_S = 5.0          # RFC 8628 section 3.5: add 5 seconds on slow_down
CHECKIN_INTERVAL_S = 60.0
CHECKIN_JITTER = 0.2            # +-20 % so a building's boxes do not check in in lockstep
COMMAND_TTL_S = 15 * 60
CONFIG_TTL_S = 30 * 24 * 3600   # how long a signed config may be *accepted*, not how long it runs

PENDING = "authorization_pending"
SLOW_DOWN = "slow_down"
EXPIRED = "expired_token"
DENIED = "access_denied"

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read off a room screen and typed by someone else.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"


def new_user_code() -> str:
    """An 8-character activation code shown as ``XXXX-XXXX`` (about 37 bits)."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_user_code(text: str) -> str:
    """Accept what people type: lower case, spaces, a missing dash."""
    raw = "".join(c for c in text.upper() if c.isalnum())
    if len(raw) != 8 or any(c not in CODE_ALPHABET for c in raw):
        raise ValueError(f"activation code must be 8 characters like ABCD-EF34, got {text!r}")
    return f"{raw[:4]}-{raw[4:]}"
