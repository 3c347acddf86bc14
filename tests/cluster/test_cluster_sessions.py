"""Sessions and the HTTP contract on the cluster profile: each service its own process (issue 9)."""

from __future__ import annotations

import httpx
import pytest

from tests.cluster.stack import ClusterStack
from tests.embedded import Api

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_logout_at_the_gateway_ends_the_token_at_every_service(cluster: ClusterStack, master: Api) -> None:
    """issue 9 item 8: logout left the bearer token valid for 12 h; on the cluster profile the
    gateway's sign-out must end it for every service process, which verifies tokens on its own."""
    user = Api.sign_up(cluster.url, "leaver@cluster.crowdseg", "Leaver")
    token = user.http.headers["authorization"]
    # Each service reads the user from the store itself: ingest (tasks) and consensus (statistics).
    direct = [
        f"{cluster.services['ingest'].url}/api/v1/tasks",
        f"{cluster.services['consensus-0'].url}/api/v1/me/stats",
    ]
    for url in direct:
        assert httpx.get(url, headers={"Authorization": token}).status_code == 200, url
    assert user.http.post("/auth/logout").status_code == 204
    assert user.http.get("/me").status_code == 401  # the gateway itself
    assert user.http.get("/tasks").status_code == 401  # proxied to ingest
    for url in direct:
        assert httpx.get(url, headers={"Authorization": token}).status_code == 401, url


def test_a_wrong_method_through_the_gateway_is_405_with_the_whole_allow(cluster: ClusterStack) -> None:
    """issue 9 item 9: a wrong method on an API path is 405 with every allowed method, also when the
    gateway proxies it to the service that owns the path."""
    for method, path, allow in (("DELETE", "/api/v1/tasks", "GET, HEAD, POST"), ("GET", "/api/v1/auth/login", "POST")):
        response = httpx.request(method, f"{cluster.url}{path}")
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == allow
