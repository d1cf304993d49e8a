"""Run the Alembic migrations from code (tests, `make run`); the CLI `alembic upgrade head` does the same."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from resources.settings import PROJECT_ROOT


def alembic_config(database_url: str) -> Config:
    """The project's Alembic configuration pointed at one database."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
