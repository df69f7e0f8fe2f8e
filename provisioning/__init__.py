"""Zero-touch provisioning: the box's agent and the reference provisioning service."""
