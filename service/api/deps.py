"""Dependencies, declared once as annotated aliases: settings, store, model, API key and role.

Handlers name what they need in their signature (``key: AgentKey, store: StoreDep,
serving: ServingModelDep``), so authorisation and I/O are visible at a glance. Tests replace
any of them with ``app.dependency_overrides``; the two factories used at start-up,
:func:`get_store_opener` and :func:`get_model_loader`, are honoured there too.

Authentication: ``Authorization: Bearer <key>``. No or an unknown key answers 401 with
``WWW-Authenticate: Bearer``; a known key whose role is too low answers 403.

Every dependency here is ``async def``: they only read app state or hash a key, and FastAPI
would run a plain ``def`` dependency in the thread pool, one thread hop each, which cost more
than the scoring itself. Even on the loop each dependency costs FastAPI some 15 µs of CPU per
request, so the chains are short: the role check authenticates the key itself and the model
dependency reads the holder itself (a scoring request's tree has six nodes: the endpoint, the
role check, the bearer credentials under it, the store, the model and the explainer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from model.policy import Policy, PolicyError, load_policy
from service.api.keys import ApiKeyEntry, KeyRing, Role
from service.api.serving import ModelHolder, ModelLoader, ServingModel, load_serving_model
from service.settings import Settings


class StoreProtocol(Protocol):
    """What the API uses of :class:`service.storage.Store` (all calls are blocking)."""

    def migrate(self) -> None: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def latest_recommendation(self, customer_id: str) -> Any: ...

    def record_decision(self, report: Any) -> Any: ...

    def record_decision_once(self, report: Any, idempotency_key: str) -> Any: ...

    def list_decisions(
        self,
        *,
        customer_id: str | None = None,
        account_manager: str | None = None,
        region: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[Any]: ...

    def customer_scope(self, customer_id: str) -> tuple[str | None, str | None] | None: ...

    def portfolio_page(self, *args: Any, **kwargs: Any) -> Any: ...

    def portfolio_rows(self, *args: Any, **kwargs: Any) -> Any: ...

    def portfolio_tallies(self, where: Any) -> Any: ...

    def portfolio_net_margins(self, where: Any) -> Any: ...

    def portfolio_options(self, where: Any) -> Any: ...

    def record_approval(self, request: Any) -> Any: ...

    def list_approvals(self, *args: Any, **kwargs: Any) -> Sequence[Any]: ...

    def recommendation_by_id(self, recommendation_id: str) -> Any: ...


StoreOpener = Callable[[Settings], StoreProtocol]


def open_store(settings: Settings) -> StoreProtocol:
    """Open the configured store and bring its schema up to date (blocking)."""
    from service.storage import Store

    store = Store(
        settings.database_url,
        busy_timeout_s=settings.store_timeout_s,
        statement_timeout_s=settings.store_timeout_s,
    )
    store.migrate()
    return store


def get_store_opener() -> StoreOpener:
    """How the app opens its store at start-up (override in tests)."""
    return open_store


def get_model_loader() -> ModelLoader:
    """How the app loads the model at start-up and on reload (override in tests)."""
    return load_serving_model


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> StoreProtocol:
    """The store opened at start-up."""
    store: StoreProtocol = request.app.state.store
    return store


async def get_model_holder(request: Request) -> ModelHolder:
    """The holder of the served model."""
    holder: ModelHolder = request.app.state.models
    return holder


async def get_explainer(request: Request) -> Executor:
    """The thread that computes churn drivers (TreeSHAP) for small scoring requests."""
    explainer: Executor = request.app.state.explainer
    return explainer


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ExplainerDep = Annotated[Executor, Depends(get_explainer)]
StoreDep = Annotated[StoreProtocol, Depends(get_store)]
ModelHolderDep = Annotated[ModelHolder, Depends(get_model_holder)]
ModelLoaderDep = Annotated[ModelLoader, Depends(get_model_loader)]


async def get_serving_model(request: Request) -> ServingModel:
    """The model to serve this request with, fixed for the whole request.

    Reads the holder itself rather than depending on :func:`get_model_holder`: every
    dependency FastAPI solves costs some 15 µs of CPU per request.

    Raises:
        HTTPException: 503 while no model is loaded.
    """
    holder: ModelHolder = request.app.state.models
    serving = holder.current
    if serving is None:
        why = f" ({holder.last_error})" if holder.last_error else ""
        raise HTTPException(
            503,
            detail=f"no model is loaded yet{why}; an admin can POST /v1/model/reload once the "
            "registry has a champion",
            headers={"Retry-After": "30"},
        )
    return serving


ServingModelDep = Annotated[ServingModel, Depends(get_serving_model)]


async def get_policy(request: Request, holder: ModelHolderDep) -> Policy:
    """The served model's policy; the configured policy file while no model is loaded.

    Raises:
        HTTPException: 503 when no model is loaded and the policy file cannot be read.
    """
    serving = holder.current
    if serving is not None:
        return serving.policy
    cached: Policy | None = getattr(request.app.state, "fallback_policy", None)
    if cached is None:
        settings: Settings = request.app.state.settings
        try:
            cached = load_policy(settings.policy)
        except (PolicyError, OSError) as error:
            raise HTTPException(
                503, detail=f"the decision policy cannot be read: {error}"
            ) from None
        request.app.state.fallback_policy = cached
    return cached


PolicyDep = Annotated[Policy, Depends(get_policy)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    bearerFormat="kw_<43 url-safe characters>",
    description="An API key made with `new_api_key` (role viewer, agent or admin), sent as "
    "`Authorization: Bearer <key>`.",
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="keepwise"'}


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> ApiKeyEntry:
    """The key the request authenticates with, among the app's configured keys.

    Raises:
        HTTPException: 401 when the key is missing or unknown.
    """
    keyring: KeyRing = request.app.state.keyring
    if credentials is None:
        raise HTTPException(
            401, detail="missing API key: send 'Authorization: Bearer <key>'", headers=_CHALLENGE
        )
    entry = keyring.authenticate(credentials.credentials)
    if entry is None:
        raise HTTPException(
            401,
            detail="invalid API key",
            headers={"WWW-Authenticate": 'Bearer realm="keepwise", error="invalid_token"'},
        )
    return entry


def require_role(role: Role) -> Callable[..., Awaitable[ApiKeyEntry]]:
    """A dependency admitting keys whose role includes ``role`` (401 without a known key,
    403 when its role is too low).

    It authenticates itself (:func:`authenticate`) instead of depending on a key dependency:
    one dependency fewer for FastAPI to solve on every request.
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKeyEntry:
        key = authenticate(request, credentials)
        if not key.role.includes(role):
            raise HTTPException(
                403, detail=f"this API key has role '{key.role}'; this needs role '{role}'"
            )
        return key

    dependency.__name__ = f"require_{role}"
    return dependency


require_viewer = require_role(Role.viewer)
require_agent = require_role(Role.agent)
require_admin = require_role(Role.admin)

ViewerKey = Annotated[ApiKeyEntry, Depends(require_viewer)]
AgentKey = Annotated[ApiKeyEntry, Depends(require_agent)]
AdminKey = Annotated[ApiKeyEntry, Depends(require_admin)]
