"""Every refusal in the shape its caller reads: a page for a browser form, JSON for an app and for routing."""

from __future__ import annotations

import httpx

SAME_ORIGIN = {"Origin": "http://127.0.0.1:8080"}
# A multipart body whose part has no headers: the form parser refuses it.
BROKEN_MULTIPART = {"content": b"--b\r\nNone--b--\r\n", "headers": {"Content-Type": "multipart/form-data; boundary=b"}}


async def test_a_form_the_parser_refuses_is_a_400_page_not_a_json_server_error(client: httpx.AsyncClient) -> None:
    for path in ("/logout", "/account/delete", "/account/sessions/end"):
        response = await client.post(path, content=BROKEN_MULTIPART["content"],
                                     headers={**BROKEN_MULTIPART["headers"], **SAME_ORIGIN})
        assert response.status_code == 400, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert "invalid_request" in response.text and "server_error" not in response.text, path


async def test_an_app_logging_out_with_a_bearer_token_reads_json_errors(client: httpx.AsyncClient) -> None:
    refused = await client.post("/logout", headers={"Authorization": "Bearer not-a-jwt"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    unreadable = await client.post("/logout", content=BROKEN_MULTIPART["content"],
                                   headers={**BROKEN_MULTIPART["headers"], "Authorization": "Bearer not-a-jwt"})
    # The token is checked before the body is read: an unreadable body behind a bad token is still its 401.
    assert unreadable.status_code == 401 and unreadable.json()["error"] == "invalid_token"


async def test_routing_refusals_stay_json_with_allow(client: httpx.AsyncClient) -> None:
    wrong_method = await client.put("/login")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "GET, HEAD"
    unknown = await client.get("/no-such-page")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
