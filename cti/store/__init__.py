"""The store: SQLAlchemy async engine/session (:class:`Database`), the declarative
``Base`` features put their models on, and alembic migrations (:mod:`cti.store.migrate`).
"""

from cti.store.db import Database, StoreConfigError
from cti.store.models import Base

__all__ = ["Base", "Database", "StoreConfigError"]
