"""Work derived from a pipeline config once, not once per day.

A `PipelineConfig` is frozen (pydantic `frozen=True`), so what is derived from it (column lists,
parsed bounds, resolved transforms) cannot go stale while the object lives. It is not hashable
(it holds dicts), so derived values are cached by object identity; the cache keeps a reference to
the config, so an identity cannot be reused by another object while its entry exists.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_MAX_ENTRIES = 32
_lock = threading.Lock()
_entries: OrderedDict[tuple[str, int], tuple[Any, Any]] = OrderedDict()


def per_config(name: str, config: Any, build: Callable[[Any], T]) -> T:
    """`build(config)`, computed once per (name, config object) and reused (LRU, thread-safe)."""
    key = (name, id(config))
    with _lock:
        hit = _entries.get(key)
        if hit is not None and hit[0] is config:
            _entries.move_to_end(key)
            return hit[1]
    value = build(config)
    with _lock:
        _entries[key] = (config, value)
        _entries.move_to_end(key)
        while len(_entries) > _MAX_ENTRIES:
            _entries.popitem(last=False)
    return value
