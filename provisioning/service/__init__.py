"""The reference provisioning service: CA, enrolment, signed config, commands, admin API."""
