"""Task stores: the TaskStore interface and its backends."""

from spotbot.stores.base import DEFAULT_MAX_ATTEMPTS, SearchHit, TaskStore, empty_counts

__all__ = ["DEFAULT_MAX_ATTEMPTS", "SearchHit", "TaskStore", "empty_counts"]
