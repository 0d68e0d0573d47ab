"""Real-time serving: `uvicorn ml_assets.serving:app` (the app is built in
`ml_assets.serving.api`; no submodule may be called `app`, or it would shadow this attribute).

Nothing happens on import: `app` is built from the environment the first time it is asked for,
and models are loaded when the server starts. `create_app(...)` builds one with explicit config
and storage (tests, embedding).
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "create_app"]

_app: Any = None


def create_app(*args: Any, **kwargs: Any):
    from ml_assets.serving.api import create_app as _create_app

    return _create_app(*args, **kwargs)


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
