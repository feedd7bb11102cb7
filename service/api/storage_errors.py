"""Calls into the blocking store from async handlers, with its errors turned into HTTP answers.

:class:`service.storage.StoreError` with a ``field`` means the store refused the input (422 at
that field, without echoing values); without a ``field`` the database failed (503: nothing was
stored, the client should retry). :class:`service.storage.StoreConflict` is 409 (a retry of the
same request will not help). The database's own message is logged, not returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from service.storage import StoreConflict, StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FIELD_MESSAGES = {
    "recommendation_id": "not a stored recommendation of this customer",
}


async def store_call(
    function: Callable[..., T], *args: Any, where: str = "body", **kwargs: Any
) -> T:
    """Run a blocking store call in the thread pool.

    Args:
        function: A bound :class:`service.storage.Store` method.
        *args: Its positional arguments.
        where: Location prefix of a refused field in a 422 (``body``, ``query``, ``path``).
        **kwargs: Its keyword arguments.

    Raises:
        RequestValidationError: The store refused a field (422).
        HTTPException: The request conflicts with what is stored (409), or the database
            failed (503).
    """
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except StoreConflict as error:
        logger.info("store conflict: %s", error)
        raise HTTPException(409, detail=str(error)) from None
    except StoreError as error:
        if error.field is not None:
            logger.info("store refused %s: %s", error.field, error)
            message = _FIELD_MESSAGES.get(error.field, f"{error.field} was refused by the store")
            raise RequestValidationError(
                [{"type": "store_rule", "loc": (where, error.field), "msg": message}]
            ) from None
        logger.error("store unavailable: %s", error)
        raise HTTPException(
            503,
            detail="the store is unavailable; nothing was written, retry later",
            headers={"Retry-After": "5"},
        ) from None
