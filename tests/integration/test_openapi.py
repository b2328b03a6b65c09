"""The served OpenAPI document covers every route the app has, and only those."""

from __future__ import annotations

from humtemp.instrument import unmatched
from tests.conftest import ClientFactory


async def test_openapi_covers_every_route(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (route.resource.canonical, route.method)
        for route in client.app.router.routes()  # type: ignore[union-attr]
        if route.method != "HEAD" and route.resource is not None
        and route.handler.__name__ != unmatched.__name__  # the JSON 404/405 catch-all
    }
    assert documented == served
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("responses"), f"{method} {path} documents no responses"
