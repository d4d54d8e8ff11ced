"""Schema migrations with Alembic, run by each service at start-up.

Each service keeps its revisions in its own package (services/<name>/migrations)
and its env.py hands over to `run_migrations` here. Start-up runs them to head
in one transaction, under a lock, so replicas starting together take turns.

To write a new revision, let autogenerate compare the models with a scratch
database at head (SQLite runs in batch mode, so ALTERs work there too):

    from alembic import command
    from services.common.migrations import alembic_config
    command.upgrade(alembic_config(folder, database_url=scratch), "head")
    command.revision(alembic_config(folder, database_url=scratch), "...", autogenerate=True)

and `command.upgrade(..., "0002:head", sql=True)` prints the SQL for a database
administrator instead of running it. Offline SQL starts at 0002: revision
0002 alters a table in batch mode, which reads the live table first, so from
an empty database run it online (as start-up does).
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.db import transaction


async def upgrade_to_head(engine: AsyncEngine, script_location: Path, *, lock_name: str) -> None:
    config = alembic_config(script_location)
    async with transaction(engine, write=True) as connection:
        if connection.dialect.name == "postgresql":
            # SQLite's BEGIN IMMEDIATE already keeps a second starter out.
            await connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:lock)"),
                {"lock": zlib.crc32(f"ordersaga-migrations:{lock_name}".encode())},
            )
        await connection.run_sync(_upgrade, config)


def alembic_config(script_location: Path | str, *, database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url)
    return config


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_migrations(target_metadata: MetaData, *, service: str) -> None:
    """The body of every service's env.py.

    Each service records its schema version in a table of its own: pointed by
    mistake at another service's database, it fails loudly on the tables that
    exist already instead of taking that service's version for its own.
    """
    version_table = f"alembic_version_{service}"
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(connection, target_metadata, version_table)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: use alembic_config(..., database_url=...)")
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            version_table=version_table,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata, version_table))


async def _run_online(url: str, target_metadata: MetaData, version_table: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_on, target_metadata, version_table)
    finally:
        await engine.dispose()


def _run_on(connection: Connection, target_metadata: MetaData, version_table: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_idempotency_keys_table() -> None:
    """Version 1 of services.common.idempotency.IDEMPOTENCY_KEYS, for each
    service's first revision. Frozen like any migration: a later change to the
    table gets a revision of its own in every service."""
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )


def scope_idempotency_keys_by_caller() -> None:
    """Version 2 of the idempotency table, for each service's second revision:
    keys belong to a caller, primary key (caller, key).

    Every key stored before was the workers': nothing else called the saga's
    endpoints until callers were told apart, so existing rows become theirs.
    """
    with op.batch_alter_table("idempotency_keys", recreate="always") as batch:
        batch.add_column(
            sa.Column("caller", sa.String(length=32), nullable=False, server_default="worker")
        )
        batch.drop_constraint("pk_idempotency_keys", type_="primary")
        batch.create_primary_key("pk_idempotency_keys", ["caller", "key"])
    # The default only filled the existing rows; new ones always name their caller.
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("caller", server_default=None, existing_type=sa.String(length=32))


def unscope_idempotency_keys() -> None:
    """Back to version 1: only the workers' keys can stay (a key is unique again)."""
    op.execute("DELETE FROM idempotency_keys WHERE caller <> 'worker'")
    with op.batch_alter_table("idempotency_keys", recreate="always") as batch:
        batch.drop_constraint("pk_idempotency_keys", type_="primary")
        batch.drop_column("caller")
        batch.create_primary_key("pk_idempotency_keys", ["key"])


def create_order_fences_table() -> None:
    """Version 1 of services.common.fences.ORDER_FENCES, for each service's
    third revision (frozen, like every migration)."""
    op.create_table(
        "order_fences",
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("fenced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_order_fences")),
    )


def drop_order_fences_table() -> None:
    op.drop_table("order_fences")
