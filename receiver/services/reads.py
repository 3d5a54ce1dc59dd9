"""One row by id, or the service error that says it is not there."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine

from receiver.errors import ServiceError
from receiver.store.repositories import Repository
from receiver.store.uow import UnitOfWork

T = TypeVar("T")


def read_one(engine: Engine, read: Callable[[Repository], T | None], missing: ServiceError) -> T:
    """What ``read`` returns in a read-only unit of work.

    :raises ServiceError: ``missing``, when ``read`` returns None.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        found = read(uow.repo)
    if found is None:
        raise missing
    return found
