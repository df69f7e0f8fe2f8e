"""Network-resilience test fixtures: a real Janus on loopback (tests/janus.py)."""
from tests.janus import in_janus_netns, janus, loopback_ice  # noqa: F401  (fixtures)
