"""The technician status page: read-only, off by default, no default password.

When enabled (``roombox run --status-page HOST:PORT``) it serves the box's state, health,
peripherals, network, last call statistics and live DOA and levels. Access needs a
short-lived code that IT issues through provisioning (the signed ``technician_access``
command carries the code's SHA-256 and lifetime; the box never sees the code itself), or
locally with ``roombox technician-code`` by someone who can already reach the control
socket. A code opens a session cookie that expires with the grant.
"""
