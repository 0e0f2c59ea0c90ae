"""A service's routes declared from the contract's endpoints (contracts `endpoints.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from mfaplane_contracts.endpoints import Endpoint

Handler = Callable[..., Any]


def serve(router: APIRouter, endpoint: Endpoint[Any], status_code: int | None = None) -> Callable[[Handler], Handler]:
    """Adds the decorated handler to `router` at the endpoint's path and method, answering its model."""
    return router.api_route(endpoint.path, methods=[endpoint.method], response_model=endpoint.answer,
                            status_code=status_code)
