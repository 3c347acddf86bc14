"""Schemathesis hooks of the OpenAPI contract test (tests/contract/test_openapi_schemathesis.py).

Loaded by the `st` CLI through SCHEMATHESIS_HOOKS. Authentication signs in as the platform's admin
and signs in again after a 401: the run itself calls ``POST /auth/logout``, which ends every token of
the account (issue 9), so a fixed ``Authorization`` header would be dead after the first logout.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import schemathesis

URL = os.environ.get("CROWDSEG_SCHEMATHESIS_URL", "")
EMAIL = os.environ.get("CROWDSEG_SCHEMATHESIS_EMAIL", "")
PASSWORD = os.environ.get("CROWDSEG_SCHEMATHESIS_PASSWORD", "")


@schemathesis.auth(refresh_interval=600, retry_on=[401])
class SignIn:
    def get(self, case: Any, ctx: Any) -> str:
        response = httpx.post(f"{URL}/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=60)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
