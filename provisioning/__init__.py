"""Zero-touch provisioning: the box's agent and the reference provisioning service.

Shared by both sides (and nothing else is): ``schema`` (settings, signed documents),
``crypto`` (CA, CSRs, certificates, Ed25519 JWS, atomic 0600 writes), ``protocol`` (paths,
timings, activation-code format), ``errors``.

``service/`` — ``roombox server init|run``: FastAPI on uvicorn over HTTPS, client
certificates verified against its own CA; SQLAlchemy on SQLite (WAL) or PostgreSQL;
enrolment (pre-registered CSV, RFC 8628 activation code, pending acceptance), signed
configs and commands, check-in, the token-protected and audited admin API (OpenAPI at
``/docs``).

``agent/`` — on the box: identity (key 0600, CSR, device certificate), discovery (seed
file, DNS-SD, typed URL; CA pinned by fingerprint), enrolment, check-in, config trial ->
commit or roll back to last-known-good, signed one-shot commands. It reports to the
terminal through an event queue and asks it through two callbacks; see
``agent.agent.ProvisioningAgent``.
"""
