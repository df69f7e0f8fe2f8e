"""The box side of provisioning: identity, discovery, enrolment, signed config, check-in."""
