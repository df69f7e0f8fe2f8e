"""Database schema and engine set-up: SQLite (WAL) by default, PostgreSQL with the same schema.

Migrations are a small versioned-DDL list: each entry runs once, in order, inside a
transaction, and ``schema_version`` records how far a database has come. A new release
appends to ``MIGRATIONS``; it never edits an applied step.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import (BigInteger, Column, Connection, Engine, Index, Integer, MetaData, String,
                        Table, Text, UniqueConstraint, create_engine, event, select, text)

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_S = 10

metadata = MetaData()

devices = Table(
    "devices", metadata,
    Column("serial", String(128), primary_key=True),
    # preregistered -> accepted; pending -> accepted | rejected
    Column("state", String(16), nullable=False),
    Column("site", String(200), nullable=False, default=""),
    Column("room", String(200), nullable=False, default=""),
    Column("meeting_url", Text, nullable=False, default=""),
    Column("calendar_url", Text, nullable=False, default=""),
    Column("hardware_profile", String(200), nullable=False, default=""),
    Column("csr_pem", Text),
    Column("cert_fingerprint", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("enrolled_at", BigInteger),
    Column("last_seen", BigInteger),
    Column("health", Text),
    Column("config_version", Integer),
    Column("config_status", Text),
)

device_codes = Table(
    "device_codes", metadata,
    Column("device_code", String(64), primary_key=True),
    Column("user_code", String(9), nullable=False, unique=True),
    Column("serial", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("interval_ms", Integer, nullable=False),
    Column("last_poll_ms", BigInteger),
    # pending -> approved | denied -> consumed
    Column("status", String(16), nullable=False),
)

configs = Table(
    "configs", metadata,
    Column("serial", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("serial", "version", name="configs_serial_version"),
)

commands = Table(
    "commands", metadata,
    Column("id", String(64), primary_key=True),
    Column("serial", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("document", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    # pending -> done | failed | refused | cancelled
    Column("status", String(16), nullable=False),
    Column("result", Text),
    Index("commands_serial_status", "serial", "status"),
)

code_failures = Table(
    "code_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client", String(128), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("code_failures_client_at", "client", "at_ms"),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False, default=""),
    Column("detail", Text, nullable=False, default="{}"),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1)]


def open_database(url: str) -> Engine:
    """Engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``), migrated."""
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=8, max_overflow=0,
                               connect_args={"check_same_thread": False,
                                             "timeout": SQLITE_BUSY_TIMEOUT_S})
        _sqlite_tuning(engine)
    else:
        engine = create_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True)
    migrate(engine)
    return engine


_write_locks: dict[int, threading.Lock] = {}


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction; on SQLite, one at a time per process.

    SQLite has a single writer anyway, and its busy handler waits by sleeping in growing
    steps (up to 100 ms), so threads queueing on a lock here get far lower latency than
    threads colliding inside SQLite. PostgreSQL needs no such help.
    """
    lock = _write_locks.get(id(engine)) if engine.dialect.name == "sqlite" else None
    with lock or contextlib.nullcontext():
        with engine.begin() as conn:
            yield conn


def _sqlite_tuning(engine: Engine) -> None:
    _write_locks[id(engine)] = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode loses at most the last transactions on power loss, never integrity.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction
        # can fail with SQLITE_BUSY without waiting when another writer got in first.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> int:
    """Apply the migrations this database has not seen; returns the schema version."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
        current = conn.execute(select(text("max(version)")).select_from(
            text("schema_version"))).scalar() or 0
        for version, step in MIGRATIONS:
            if version > current:
                log.info("provisioning db: applying migration %d", version)
                step(conn)
                conn.execute(text("INSERT INTO schema_version (version) VALUES (:v)"),
                             {"v": version})
                current = version
    return current
