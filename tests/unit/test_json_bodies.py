"""The API's JSON-only rule for bodies: a 415 problem that names the header to send."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.json_bodies import JsonBodies, is_json


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"body": (await request.body()).decode()})


APP = JsonBodies(Starlette(routes=[Route("/v1/things", _echo, methods=["POST", "PUT", "GET"]),
                                   Route("/console/form", _echo, methods=["POST"])]))


def call(method: str, path: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP),
                                     base_url="http://test") as client:
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON",
    "application/cloudevents-batch+json", "application/merge-patch+json"])
def test_json_media_types_pass(content_type: str) -> None:
    assert is_json(content_type)
    answer = call("POST", "/v1/things", content=b'{"a": 1}',
                  headers={"Content-Type": content_type})
    assert answer.status_code == 200
    assert answer.json() == {"body": '{"a": 1}'}


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
    "application/jsonx", "text/json"])
def test_other_media_types_get_a_415_problem_naming_the_header(content_type: str) -> None:
    assert not is_json(content_type)
    answer = call("PUT", "/v1/things", content=b'{"a": 1}',
                  headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "https://meterly.dev/problems/unsupported-media-type"
    assert "Content-Type: application/json" in problem["detail"]
    assert content_type in problem["detail"]
    assert problem["supported"] == ["application/json", "application/*+json"]


def test_a_body_without_a_content_type_is_read_as_json() -> None:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP),
                                     base_url="http://test") as client:
            request = client.build_request("POST", "/v1/things", content=b"{}")
            assert "content-type" not in request.headers
            return await client.send(request)

    assert asyncio.run(go()).status_code == 200


def test_requests_without_a_body_and_the_console_forms_are_left_alone() -> None:
    assert call("POST", "/v1/things", headers={"Content-Type": "text/plain",
                                               "Content-Length": "0"}).status_code == 200
    assert call("GET", "/v1/things", headers={"Content-Type": "text/plain"}).status_code == 200
    assert call("POST", "/console/form", data={"token": "x"}).status_code == 200
