"""A private, loopback-only meeting for ``roombox demo`` and ``bench/join.py``: a real Janus
VideoRoom in its own network namespace, and a simulated remote participant.

Development tooling, not used by the running terminal. Needs root (network namespaces);
CI runs as root. The pytest fixtures in tests/janus.py rest on the same facts
(../shared/janus-loopback/README.md): Janus ignores loopback-flagged interfaces when
gathering ICE candidates, so it runs in a namespace holding ``lo`` and ``jlo0``, a
non-loopback device that also carries 127.0.0.1/32, and aioice is limited to 127.0.0.1.
"""
