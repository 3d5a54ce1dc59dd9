"""A page of a list read newest first, and the cursor to the next one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class _Row(Protocol):
    @property
    def id(self) -> Any: ...


R = TypeVar("R", bound=_Row)


@dataclass(frozen=True)
class Page(Generic[R]):
    """Up to ``limit`` rows, newest first, and ``next_before``: the id to pass as ``before`` for
    the next page (None on the last page)."""

    items: list[R]
    next_before: Any

    @classmethod
    def of(cls, rows: Sequence[R], limit: int) -> Page[R]:
        """The first ``limit`` of ``rows``, read with one row more than that (to know whether
        another page follows)."""
        items = list(rows[:limit])
        return cls(items, items[-1].id if len(rows) > limit and items else None)

    @classmethod
    def read(
        cls, list_rows: Callable[..., Sequence[R]], before: Any, limit: int, **filters: Any
    ) -> Page[R]:
        """The page of ``list_rows(**filters, before_id=before, limit=limit + 1)``, a repository's
        list method read newest first (:meth:`of`).

        :param before: the id the page starts below, or None for the first page.
        """
        return cls.of(list_rows(**filters, before_id=before, limit=limit + 1), limit)
