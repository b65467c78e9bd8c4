"""One declarative base with a constraint naming convention, and reusable typed columns."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from sqlalchemy import CheckConstraint, DateTime, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


Timestamp = Annotated[dt.datetime, mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())]
Sha256 = Annotated[str, mapped_column(String(64))]
Sha1 = Annotated[str, mapped_column(String(40))]


def hex_check(column: str, length: int, name: str, *, nullable: bool = False) -> CheckConstraint:
    """The database refuses anything but lowercase hex of the right length.

    Stripping every hex digit with nested ``replace`` is portable SQL: SQLite has no regex and
    Postgres no GLOB, and both must enforce the same rule.
    """
    stripped = column
    for ch in "0123456789abcdef":
        stripped = f"replace({stripped}, '{ch}', '')"
    cond = f"length({column}) = {length} AND {stripped} = ''"
    if nullable:
        cond = f"{column} IS NULL OR ({cond})"
    return CheckConstraint(cond, name=name)
