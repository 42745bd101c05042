"""Shared route dependencies: the store, the settings and the bearer-token checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from database.settings import Settings
from database.similarity import Similarity, get_similarity
from database.store import Store

_bearer = HTTPBearer(auto_error=False)


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_similarity_backend(settings: SettingsDep) -> Similarity:
    return get_similarity(settings.embedding_backend, settings.embedding_url, settings.embedding_model,
                          settings.embedding_key)


SimilarityDep = Annotated[Similarity, Depends(get_similarity_backend)]


def tokens_match(supplied: str | None, expected: str) -> bool:
    # Constant-time comparison: response timing must not reveal how much of a guess was right.
    return bool(supplied) and hmac.compare_digest(supplied.encode(), expected.encode())


def _check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if not tokens_match(credentials.credentials if credentials else "", settings.api_token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token (Authorization: Bearer <API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    _check_token(settings, credentials)


def require_read_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.protect_reads:
        _check_token(settings, credentials)


WriteAuth = Depends(require_token)
ReadAuth = Depends(require_read_token)
