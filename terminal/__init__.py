"""The terminal process: the state machine and the wiring of hal/, media/ and provisioning/."""
