"""The service database: same schema on SQLite (WAL) and PostgreSQL, migrations run once."""
from __future__ import annotations

from sqlalchemy import inspect, text

from provisioning.service.db import MIGRATIONS, migrate, open_database


def test_migrations_apply_once_and_create_the_schema(database_url):
    engine = open_database(database_url)
    try:
        assert migrate(engine) == MIGRATIONS[-1][0]     # second run: nothing to do
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version FROM schema_version")).scalars().all()
        assert versions == [v for v, _ in MIGRATIONS]
        tables = set(inspect(engine).get_table_names())
        assert {"devices", "device_codes", "configs", "commands", "audit",
                "code_failures"} <= tables
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
