#!/usr/bin/env python3
"""Microsoft Graph beta SDK for Python compatibility test.

Drives a running entitlement-gateway with the unchanged `msgraph-beta-sdk`
(kiota-based), the way an application would: a GraphRequestAdapter with a
bearer-token authentication provider, `adapter.base_url` pointed at the
gateway, and the generated request builders of
`client.identity_governance.entitlement_management.access_package_assignments`.

Run it through tests/compat/msgraph_sdk_compat.sh, which installs the SDK,
starts the server and mints the tokens. By hand:

    python msgraph_sdk_compat.py --base-url http://127.0.0.1:PORT/beta \\
        --token "$TOKEN" --read-token "$READ_TOKEN" \\
        --user-a "$OID_A" --user-a-token "$TOKEN_A" \\
        --user-b "$OID_B" --user-b-token "$TOKEN_B" [--verbose]

(or GRAPH_BASE_URL, GRAPH_TOKEN, GRAPH_READ_TOKEN, GRAPH_USER_A, GRAPH_USER_A_TOKEN,
GRAPH_USER_B, GRAPH_USER_B_TOKEN in the environment). The user tokens are tokens
whose `oid` claim is that user's object id (`entitlement-gateway token --subject OID`):
two distinct ids that no other assignment targets.

Sections: create / get, errors, the collection (list with
$filter/$top/$count/$select and @odata.nextLink paging, and delete), the count
(`access_package_assignments.count.get` with and without $filter, $search is a
400), filterByCurrentUser(on='target') (each user's token lists exactly its own
assignments, with $top/@odata.nextLink paging, $count, $filter, $orderby and
$select inside the function; on='createdBy' is a 400), and unsupported query
options (raw URLs through `with_url`: an unknown option is a 400 on every route;
on beta, $count takes `filter` without its `$`).

Every check prints PASS or FAIL and its name; a FAIL also shows what was
expected, what came back and the last HTTP exchange. The last line is
"N passed, N failed"; the exit status is 1 when any check failed, 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Optional
from urllib.parse import quote, unquote, urlparse

import httpx
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta import __version__ as SDK_VERSION
from msgraph_beta.generated.identity_governance.entitlement_management.access_package_assignments.access_package_assignments_request_builder import (  # noqa: E501
    AccessPackageAssignmentsRequestBuilder,
)
from msgraph_beta.generated.identity_governance.entitlement_management.access_package_assignments.count.count_request_builder import (  # noqa: E501
    CountRequestBuilder,
)
from msgraph_beta.generated.identity_governance.entitlement_management.access_package_assignments.filter_by_current_user_with_on.filter_by_current_user_with_on_request_builder import (  # noqa: E501
    FilterByCurrentUserWithOnRequestBuilder,
)
from msgraph_beta.generated.models.access_package_assignment import AccessPackageAssignment
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.graph_request_adapter import options as GRAPH_MIDDLEWARE_OPTIONS
from msgraph_core import APIVersion, GraphClientFactory

# The properties of accessPackageAssignment that the gateway stores (as the SDK names them).
PROPERTIES = (
    "catalog_id",
    "access_package_id",
    "assignment_policy_id",
    "target_id",
    "assignment_status",
    "assignment_state",
    "is_extended",
    "expired_date_time",
)
REQUIRED = ("access_package_id", "assignment_policy_id", "target_id")
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Loopback hosts: the only ones a token is sent to over plain http.
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# --- authentication: a static token, as an application with its own token source would ---


class StaticTokenProvider(AccessTokenProvider):
    """Hands out one fixed bearer token, only for the allowed hosts, and over plain
    http only to loopback (the rule kiota's Azure identity provider applies too).

    kiota's AllowedHostsValidator compares the URL's *hostname* only (no scheme, no
    port): "127.0.0.1" allows http://127.0.0.1:ANY-PORT/...; entries must not carry
    "http://" (it raises ValueError). An empty list would allow every host.
    """

    def __init__(self, token: str, allowed_hosts: list[str]) -> None:
        self._token = token
        self._validator = AllowedHostsValidator(allowed_hosts)

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] = {}
    ) -> str:
        if not self._validator.is_url_host_valid(uri):
            return ""
        parsed = urlparse(uri)
        if parsed.scheme != "https" and parsed.hostname not in LOOPBACK:
            raise ValueError(f"refusing to send a bearer token over {parsed.scheme} to {uri}")
        return self._token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator


# --- the last HTTP exchange, shown when a check fails ---------------------------------------


@dataclass
class Exchange:
    method: str = ""
    url: str = ""
    request_body: bytes = b""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def describe(self) -> str:
        if not self.method:
            return "(no HTTP exchange)"
        shown = {k: v for k, v in self.headers.items() if k in ("location", "request-id", "content-type")}
        text = f"{self.method} {self.url}"
        if self.request_body:
            text += f"\n  request body: {clip(self.request_body)}"
        text += f"\n  -> {self.status} {shown}\n  response body: {clip(self.body)}"
        return text


def clip(data: bytes, limit: int = 600) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


class Recorder:
    """httpx event hooks that keep the last request and response (diagnostics only; the
    SDK's own middleware pipeline is left as it is)."""

    def __init__(self, verbose: bool) -> None:
        self.last = Exchange()
        self.verbose = verbose

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        try:
            request_body = request.content
        except httpx.RequestNotRead:
            request_body = b""
        self.last = Exchange(
            method=request.method,
            url=str(request.url),
            request_body=request_body,
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.content,
        )
        if self.verbose:
            print("      " + self.last.describe().replace("\n", "\n      "))


def make_client(base_url: str, token: str, recorder: Recorder) -> GraphServiceClient:
    """A GraphServiceClient for the gateway at base_url, authenticating with token."""
    host = urlparse(base_url).hostname or ""
    auth = BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token, [host]))
    # The same httpx client GraphRequestAdapter builds when given none (Graph's default
    # middleware: retry, redirect, telemetry with client-request-id, ...), plus the
    # recording hook.
    http_client = GraphClientFactory.create_with_default_middleware(
        api_version=APIVersion.beta, options=GRAPH_MIDDLEWARE_OPTIONS
    )
    http_client.event_hooks["response"].append(recorder.on_response)
    adapter = GraphRequestAdapter(auth, client=http_client)
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)


# --- checks ------------------------------------------------------------------------------------


class Suite:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []

    def section(self, title: str) -> None:
        print(f"--- {title}", flush=True)

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS  {name}", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL  {name}", flush=True)
            if detail:
                print("      " + detail.replace("\n", "\n      "))
            print("      last HTTP exchange: " + self.recorder.last.describe().replace("\n", "\n      "),
                  flush=True)
        return ok

    def check(self, name: str, condition: bool, detail: str = "") -> bool:
        return self.record(name, bool(condition), detail)

    async def call(self, name: str, awaitable: Awaitable[Any]) -> tuple[bool, Any]:
        """Awaits an SDK call that should succeed. A raised error is a FAIL of `name`;
        success is not counted here (the checks on the result are)."""
        try:
            return True, await awaitable
        except Exception as e:  # noqa: BLE001 - any error is this check's failure
            self.record(name, False, f"the SDK call raised {describe_error(e)}")
            return False, None

    async def expect_error(
        self,
        name: str,
        awaitable: Awaitable[Any],
        status: int,
        code: str,
        message_mentions: Optional[str] = None,
    ) -> Optional[ODataError]:
        """Checks that an SDK call raises ODataError with this HTTP status and Graph error
        code (and a message that mentions `message_mentions`, when given)."""
        try:
            result = await awaitable
        except ODataError as e:
            problems = []
            if e.response_status_code != status:
                problems.append(f"status {e.response_status_code}, expected {status}")
            got_code = e.error.code if e.error else None
            if got_code != code:
                problems.append(f"error.code {got_code!r}, expected {code!r}")
            message = (e.error.message if e.error else None) or ""
            if not message.strip():
                problems.append("error.message is empty")
            if message_mentions and message_mentions not in message:
                problems.append(f"error.message {message!r} does not mention {message_mentions!r}")
            self.check(name, not problems, "; ".join(problems))
            return e
        except Exception as e:  # noqa: BLE001
            self.record(name, False, f"expected ODataError {status} {code}, the SDK raised {describe_error(e)}")
            return None
        self.record(name, False, f"expected ODataError {status} {code}, the call succeeded with {summary(result)}")
        return None


def describe_error(e: BaseException) -> str:
    if isinstance(e, ODataError):
        err = e.error
        inner = err.inner_error if err else None
        return (
            f"ODataError(status={e.response_status_code}, code={err.code if err else None!r}, "
            f"message={err.message if err else None!r}, "
            f"request_id={inner.request_id if inner else None!r})"
        )
    lines = traceback.format_exception_only(type(e), e)
    return "".join(lines).strip()


def summary(value: Any) -> str:
    if isinstance(value, AccessPackageAssignment):
        return "AccessPackageAssignment(" + ", ".join(
            f"{p}={getattr(value, p)!r}" for p in ("id",) + PROPERTIES
        ) + ")"
    return repr(value)


def differences(expected: dict[str, Any], actual: Any) -> list[str]:
    """The properties of `actual` that differ from `expected` (name -> value)."""
    out = []
    for name, want in expected.items():
        got = getattr(actual, name, None)
        if got != want:
            out.append(f"{name}: got {got!r}, expected {want!r}")
    return out


def same_assignment(a: Any, b: Any) -> list[str]:
    return differences({p: getattr(a, p) for p in ("id",) + PROPERTIES}, b)


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4()}"


def is_guid(value: Any) -> bool:
    return isinstance(value, str) and GUID.match(value) is not None


# --- the sections --------------------------------------------------------------------------------


async def create_and_get(s: Suite, assignments: AccessPackageAssignmentsRequestBuilder) -> None:
    s.section("create / get")

    # 1. Every property.
    expired = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    full = {
        "catalog_id": unique("catalog"),
        "access_package_id": unique("package"),
        "assignment_policy_id": unique("policy"),
        "target_id": unique("target"),
        "assignment_status": "Delivered",
        "assignment_state": "Delivered",
        "is_extended": True,
        "expired_date_time": expired,
    }
    name = "post with every property"
    ok, created = await s.call(name, assignments.post(AccessPackageAssignment(**full)))
    if ok:
        s.check(f"{name}: the answer is an AccessPackageAssignment",
                isinstance(created, AccessPackageAssignment), summary(created))
    if ok and isinstance(created, AccessPackageAssignment):
        s.check(f"{name}: id is a lower-case GUID ({created.id})", is_guid(created.id), repr(created.id))
        s.check(f"{name}: every property comes back as sent", not differences(full, created),
                "\n".join(differences(full, created)))
        got = created.expired_date_time
        s.check(
            f"{name}: expired_date_time keeps its microseconds and UTC offset",
            isinstance(got, datetime) and got.microsecond == 123456
            and got.utcoffset() is not None and got.utcoffset().total_seconds() == 0,
            repr(got),
        )
        wire = s.recorder.last.body.decode("utf-8", "replace")
        s.check(f"{name}: the server wrote expiredDateTime as 2030-01-02T03:04:05.123456Z",
                '"expiredDateTime":"2030-01-02T03:04:05.123456Z"' in wire.replace(" ", ""), wire)

        name = "get by id"
        ok, fetched = await s.call(name, assignments.by_access_package_assignment_id(created.id).get())
        if ok:
            s.check(f"{name}: equals what post returned", not same_assignment(created, fetched),
                    "\n".join(same_assignment(created, fetched)) or summary(fetched))

    # 2. Only the required properties.
    minimal = {p: unique(p) for p in REQUIRED}
    name = "post with only accessPackageId, assignmentPolicyId, targetId"
    ok, created = await s.call(name, assignments.post(AccessPackageAssignment(**minimal)))
    if ok:
        s.check(f"{name}: id is a lower-case GUID", is_guid(getattr(created, "id", None)), summary(created))
        expected = dict(minimal, **{p: None for p in PROPERTIES if p not in REQUIRED})
        s.check(f"{name}: the three come back, the rest is None", not differences(expected, created),
                "\n".join(differences(expected, created)))

    # 3. A non-UTC offset survives the round trip (the SDK sends "+03:00").
    plus3 = timezone(timedelta(hours=3))
    offset = dict({p: unique(p) for p in REQUIRED}, expired_date_time=datetime(2017, 1, 1, 0, 3, 3, 922180, plus3))
    name = "post with expired_date_time at +03:00"
    ok, created = await s.call(name, assignments.post(AccessPackageAssignment(**offset)))
    if ok:
        got = getattr(created, "expired_date_time", None)
        s.check(f"{name}: comes back as the same instant with offset +03:00",
                isinstance(got, datetime) and got == offset["expired_date_time"]
                and got.utcoffset() == timedelta(hours=3) and got.microsecond == 922180,
                f"expired_date_time={got!r}")

    # 4. A caller-chosen id: idempotent with the same content, 409 with different content.
    chosen = str(uuid.uuid4())
    body = dict(full, id=chosen, target_id=unique("target"))
    name = f"post with a caller-chosen id ({chosen})"
    ok, first = await s.call(name, assignments.post(AccessPackageAssignment(**body)))
    if ok:
        s.check(f"{name}: keeps the id and every property", not differences(body, first),
                "\n".join(differences(body, first)))
        name = "post again with the same id and the same content"
        ok, second = await s.call(name, assignments.post(AccessPackageAssignment(**body)))
        if ok:
            s.check(f"{name}: succeeds with the same object", not same_assignment(first, second),
                    "\n".join(same_assignment(first, second)))
    await s.expect_error(
        "post again with the same id and a different assignmentState: ODataError 409 Conflict",
        assignments.post(AccessPackageAssignment(**dict(body, assignment_state="Expired"))),
        409, "Conflict",
    )


async def errors(
    s: Suite,
    assignments: AccessPackageAssignmentsRequestBuilder,
    read_only: AccessPackageAssignmentsRequestBuilder,
    bad_token: AccessPackageAssignmentsRequestBuilder,
    garbage_token: AccessPackageAssignmentsRequestBuilder,
) -> None:
    s.section("errors (ODataError)")
    unknown = str(uuid.uuid4())
    e = await s.expect_error(
        f"get of an unknown id ({unknown}): 404 Request_ResourceNotFound",
        assignments.by_access_package_assignment_id(unknown).get(),
        404, "Request_ResourceNotFound",
    )
    if e is not None:
        inner = e.error.inner_error if e.error else None
        request_id = inner.request_id if inner else None
        s.check("the 404's error.inner_error.request_id is a GUID", is_guid(request_id),
                f"inner_error={inner!r}")
        header = (e.response_headers or {}).get("request-id")
        s.check("the 404's error.inner_error.request_id equals the request-id header",
                request_id is not None and request_id == header,
                f"inner_error.request_id={request_id!r}, header={header!r}")
        # msgraph_core's telemetry middleware adds client-request-id only for Graph's
        # own hosts, so none was sent: the server uses its request-id (as Graph does).
        client_id = inner.client_request_id if inner else None
        s.check("the 404's error.inner_error.client_request_id is the request-id (none was sent)",
                client_id is not None and client_id == request_id,
                f"inner_error.client_request_id={client_id!r}, request_id={request_id!r}")
        s.check("the 404's error.inner_error.date is a datetime",
                isinstance(inner.date if inner else None, datetime), f"inner_error={inner!r}")

    mine = str(uuid.uuid4())
    config = RequestConfiguration()
    config.headers.add("client-request-id", mine)
    e = await s.expect_error(
        "get of an unknown id with a client-request-id header: 404 Request_ResourceNotFound",
        assignments.by_access_package_assignment_id(unknown).get(request_configuration=config),
        404, "Request_ResourceNotFound",
    )
    if e is not None:
        inner = e.error.inner_error if e.error else None
        client_id = inner.client_request_id if inner else None
        echoed = (e.response_headers or {}).get("client-request-id")
        s.check("that 404's error.inner_error.client_request_id and client-request-id header are ours",
                client_id == mine and echoed == mine,
                f"sent {mine!r}; inner_error.client_request_id={client_id!r}, header={echoed!r}")

    missing_target = {p: unique(p) for p in REQUIRED if p != "target_id"}
    await s.expect_error(
        "post without target_id: 400 BadRequest mentioning targetId",
        assignments.post(AccessPackageAssignment(**missing_target)),
        400, "BadRequest", message_mentions="targetId",
    )

    naive = dict({p: unique(p) for p in REQUIRED}, expired_date_time=datetime(2030, 1, 2, 3, 4, 5))
    await s.expect_error(
        "post with a timezone-naive expired_date_time (sent without offset): 400 BadRequest "
        "mentioning expiredDateTime",
        assignments.post(AccessPackageAssignment(**naive)),
        400, "BadRequest", message_mentions="expiredDateTime",
    )

    valid = {p: unique(p) for p in REQUIRED}
    await s.expect_error(
        "post with an EntitlementManagement.Read.All token: 403 Authorization_RequestDenied",
        read_only.post(AccessPackageAssignment(**valid)),
        403, "Authorization_RequestDenied",
    )
    await s.expect_error(
        "get with a token whose signature is wrong: 401 InvalidAuthenticationToken",
        bad_token.by_access_package_assignment_id(unknown).get(),
        401, "InvalidAuthenticationToken",
    )
    await s.expect_error(
        "post with a token that is no JWT: 401 InvalidAuthenticationToken",
        garbage_token.post(AccessPackageAssignment(**valid)),
        401, "InvalidAuthenticationToken",
    )

    # The read-only token still reads.
    name = "get with an EntitlementManagement.Read.All token"
    ok, created = await s.call(name, assignments.post(AccessPackageAssignment(**valid)))
    if ok and created is not None:
        ok, fetched = await s.call(name, read_only.by_access_package_assignment_id(created.id).get())
        if ok:
            s.check(f"{name}: returns the assignment", not same_assignment(created, fetched),
                    "\n".join(same_assignment(created, fetched)))


def list_config(**query: Any) -> RequestConfiguration:
    params = AccessPackageAssignmentsRequestBuilder.AccessPackageAssignmentsRequestBuilderGetQueryParameters(
        **query
    )
    return RequestConfiguration(query_parameters=params)


def count_config(**query: Any) -> RequestConfiguration:
    params = CountRequestBuilder.CountRequestBuilderGetQueryParameters(**query)
    return RequestConfiguration(query_parameters=params)


def mine_config(**query: Any) -> RequestConfiguration:
    params = FilterByCurrentUserWithOnRequestBuilder.FilterByCurrentUserWithOnRequestBuilderGetQueryParameters(
        **query
    )
    return RequestConfiguration(query_parameters=params)


async def walk(
    s: Suite, name: str, assignments: Any, first_page: Any, max_pages: int = 50
) -> Optional[list[list[AccessPackageAssignment]]]:
    """All pages, from first_page on, following @odata.nextLink with with_url(...).get().

    `assignments` is the request builder that fetched first_page (the collection's, or
    filterByCurrentUser's): its with_url gives a builder of the same kind."""
    pages = [first_page.value or []]
    page = first_page
    while page.odata_next_link:
        if len(pages) >= max_pages:
            s.record(f"{name}: paging ends", False, f"still a nextLink after {max_pages} pages")
            return None
        ok, page = await s.call(f"{name}: get the nextLink {page.odata_next_link}",
                                assignments.with_url(page.odata_next_link).get())
        if not ok:
            return None
        if page is None:
            s.record(f"{name}: a page", False, "the SDK returned None for a page")
            return None
        pages.append(page.value or [])
    return pages


async def collection(s: Suite, assignments: AccessPackageAssignmentsRequestBuilder,
                     read_only: AccessPackageAssignmentsRequestBuilder) -> None:
    s.section("collection: list ($filter, $top, $count, $select, @odata.nextLink)")
    package = str(uuid.uuid4())
    created_ids: list[str] = []
    delivered_ids: set[str] = set()
    for i in range(5):
        state = "Delivered" if i % 2 == 0 else "Expired"
        ok, created = await s.call(
            f"post assignment {i + 1} of 5 for accessPackageId {package}",
            assignments.post(AccessPackageAssignment(
                access_package_id=package, assignment_policy_id=unique("policy"),
                target_id=unique("target"), catalog_id="catalog", assignment_state=state,
                assignment_status=state, is_extended=False,
                expired_date_time=datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
            )),
        )
        if not ok or created is None:
            s.record("collection setup", False, "could not create the 5 assignments; skipping the list checks")
            return
        created_ids.append(created.id)
        if state == "Delivered":
            delivered_ids.add(created.id)
    mine = set(created_ids)

    name = f"list $filter=accessPackageId eq '{package}', $top=2, $count=true, $select=accessPackageId,targetId"
    ok, page = await s.call(name, assignments.get(request_configuration=list_config(
        filter=f"accessPackageId eq '{package}'", top=2, count=True, select=["accessPackageId", "targetId"],
    )))
    if ok and page is not None:
        s.check(f"{name}: the first page has 2 items", len(page.value or []) == 2,
                f"{len(page.value or [])} items: {[summary(a) for a in page.value or []]}")
        s.check(f"{name}: odata_count is 5", page.odata_count == 5, f"odata_count={page.odata_count!r}")
        s.check(f"{name}: odata_next_link is an absolute URL",
                isinstance(page.odata_next_link, str) and page.odata_next_link.startswith("http"),
                f"odata_next_link={page.odata_next_link!r}")
        context = page.additional_data.get("@odata.context")
        s.check(f"{name}: @odata.context is set", isinstance(context, str) and context != "",
                f"additional_data={page.additional_data!r}")
        pages = await walk(s, name, assignments, page)
        if pages is not None:
            items = [a for p in pages for a in p]
            ids = [a.id for a in items]
            s.check(f"{name}: following odata_next_link walks 3 pages of 2, 2, 1",
                    [len(p) for p in pages] == [2, 2, 1], f"page sizes {[len(p) for p in pages]}")
            s.check(f"{name}: the pages hold each of the 5 ids exactly once",
                    sorted(ids) == sorted(mine), f"ids {ids}, expected {sorted(mine)}")
            extra = [
                f"{a.id}: {p}={getattr(a, p)!r}" for a in items
                for p in PROPERTIES if p not in ("access_package_id", "target_id") and getattr(a, p) is not None
            ]
            selected_ok = all(a.access_package_id == package and a.target_id for a in items)
            s.check(f"{name}: every item has id, accessPackageId and targetId and nothing else",
                    selected_ok and not extra and all(is_guid(a.id) for a in items),
                    "\n".join(extra) or "\n".join(summary(a) for a in items))

    name = f"list $filter=accessPackageId eq '{package}' without $count"
    ok, page = await s.call(name, assignments.get(request_configuration=list_config(
        filter=f"accessPackageId eq '{package}'",
    )))
    if ok and page is not None:
        s.check(f"{name}: odata_count is None", page.odata_count is None, f"odata_count={page.odata_count!r}")
        pages = await walk(s, name, assignments, page)
        if pages is not None:
            items = [a for p in pages for a in p]
            s.check(f"{name}: all 5, with every property",
                    sorted(a.id for a in items) == sorted(mine)
                    and all(a.catalog_id == "catalog" and a.is_extended is False
                            and a.expired_date_time == datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
                            for a in items),
                    "\n".join(summary(a) for a in items))

    name = f"list $filter=accessPackage/id eq '{package}' (navigation form), $top=2"
    ok, page = await s.call(name, assignments.get(request_configuration=list_config(
        filter=f"accessPackage/id eq '{package}'", top=2,
    )))
    if ok and page is not None:
        pages = await walk(s, name, assignments, page)
        if pages is not None:
            ids = [a.id for p in pages for a in p]
            s.check(f"{name}: the same 5 ids, each once", sorted(ids) == sorted(mine),
                    f"ids {ids}, expected {sorted(mine)}")

    name = "list $filter=assignmentState eq 'Delivered', $top=50"
    ok, page = await s.call(name, assignments.get(request_configuration=list_config(
        filter="assignmentState eq 'Delivered'", top=50,
    )))
    if ok and page is not None:
        pages = await walk(s, name, assignments, page, max_pages=1000)
        if pages is not None:
            items = [a for p in pages for a in p]
            ids = [a.id for a in items]
            wrong = [summary(a) for a in items if a.assignment_state != "Delivered"]
            s.check(f"{name}: every item is Delivered", not wrong, "\n".join(wrong[:5]))
            s.check(f"{name}: holds the 3 Delivered of the 5, not the 2 Expired",
                    delivered_ids <= set(ids) and not (mine - delivered_ids) & set(ids),
                    f"{len(ids)} ids; missing {sorted(delivered_ids - set(ids))}, "
                    f"unexpected {sorted((mine - delivered_ids) & set(ids))}")
            s.check(f"{name}: no id twice", len(ids) == len(set(ids)), f"{len(ids)} ids, {len(set(ids))} distinct")

    name = "list with an EntitlementManagement.Read.All token"
    ok, page = await s.call(name, read_only.get(request_configuration=list_config(
        filter=f"accessPackageId eq '{package}'", count=True,
    )))
    if ok and page is not None:
        s.check(f"{name}: odata_count is 5", page.odata_count == 5, f"odata_count={page.odata_count!r}")

    s.section("collection: delete")
    target = created_ids[0]
    item = assignments.by_access_package_assignment_id(target)
    await s.expect_error(
        "delete with an EntitlementManagement.Read.All token: 403 Authorization_RequestDenied",
        read_only.by_access_package_assignment_id(target).delete(),
        403, "Authorization_RequestDenied",
    )
    name = f"delete {target}"
    ok, result = await s.call(name, item.delete())
    if ok:
        s.check(f"{name}: succeeds with 204 No Content",
                result is None and s.recorder.last.method == "DELETE" and s.recorder.last.status == 204,
                f"result={result!r}, status {s.recorder.last.status}")
    await s.expect_error(f"get after delete: 404 Request_ResourceNotFound", item.get(),
                         404, "Request_ResourceNotFound")
    await s.expect_error(f"delete again: 404 Request_ResourceNotFound", item.delete(),
                         404, "Request_ResourceNotFound")
    ok, page = await s.call("list after delete", assignments.get(request_configuration=list_config(
        filter=f"accessPackageId eq '{package}'", count=True,
    )))
    if ok and page is not None:
        s.check("list after delete: odata_count is 4 and the deleted id is gone",
                page.odata_count == 4 and target not in {a.id for a in page.value or []},
                f"odata_count={page.odata_count!r}, ids {[a.id for a in page.value or []]}")


async def count(s: Suite, assignments: AccessPackageAssignmentsRequestBuilder,
                read_only: AccessPackageAssignmentsRequestBuilder,
                bad_token: AccessPackageAssignmentsRequestBuilder) -> None:
    s.section("count: access_package_assignments.count ($count, $filter)")
    catalog = str(uuid.uuid4())
    for i in range(3):
        state = "Delivered" if i == 0 else "Expired"
        ok, created = await s.call(
            f"post assignment {i + 1} of 3 for catalogId {catalog}",
            assignments.post(AccessPackageAssignment(
                catalog_id=catalog, access_package_id=unique("package"), assignment_policy_id=unique("policy"),
                target_id=unique("target"), assignment_state=state,
            )),
        )
        if not ok or created is None:
            s.record("count setup", False, "could not create the 3 assignments; skipping the count checks")
            return

    name = f"count $filter=catalogId eq '{catalog}'"
    ok, n = await s.call(name, assignments.count.get(request_configuration=count_config(
        filter=f"catalogId eq '{catalog}'",
    )))
    if ok:
        s.check(f"{name}: is the int 3", type(n) is int and n == 3, f"count={n!r}")
        last = s.recorder.last
        sent = urlparse(last.url)
        content_type = last.headers.get("content-type", "")
        s.check(f"{name}: was GET .../accessPackageAssignments/$count?$filter=..., answered 200 text/plain",
                last.method == "GET" and unquote(sent.path).endswith("/accessPackageAssignments/$count")
                and unquote(sent.query).startswith("$filter=") and last.status == 200
                and content_type.startswith("text/plain"),
                f"{last.method} {last.url} -> {last.status} content-type {content_type!r}")

    name = f"count $filter=catalogId eq '{catalog}' and assignmentState eq 'Delivered'"
    ok, n = await s.call(name, assignments.count.get(request_configuration=count_config(
        filter=f"catalogId eq '{catalog}' and assignmentState eq 'Delivered'",
    )))
    if ok:
        s.check(f"{name}: is 1", n == 1, f"count={n!r}")

    name = f"count $filter=CatalogID eq '{catalog}' (property name in another case)"
    ok, n = await s.call(name, assignments.count.get(request_configuration=count_config(
        filter=f"CatalogID eq '{catalog}'",
    )))
    if ok:
        s.check(f"{name}: is 3", n == 3, f"count={n!r}")

    nothing = str(uuid.uuid4())
    name = f"count $filter=catalogId eq '{nothing}' (matches nothing)"
    ok, n = await s.call(name, assignments.count.get(request_configuration=count_config(
        filter=f"catalogId eq '{nothing}'",
    )))
    if ok:
        s.check(f"{name}: is 0", type(n) is int and n == 0, f"count={n!r}")

    name = "count without $filter"
    ok, total = await s.call(name, assignments.count.get())
    if ok:
        s.check(f"{name}: is an int >= the 3 created here", type(total) is int and total >= 3, f"count={total!r}")
        # Nothing else writes to this server meanwhile: the list's @odata.count is the same number.
        ok, page = await s.call(f"{name}: list $top=1, $count=true",
                                assignments.get(request_configuration=list_config(top=1, count=True)))
        if ok and page is not None:
            s.check(f"{name}: equals the list's odata_count", page.odata_count == total,
                    f"count={total!r}, list odata_count={page.odata_count!r}")

    name = f"count $filter=catalogId eq '{catalog}' with an EntitlementManagement.Read.All token"
    ok, n = await s.call(name, read_only.count.get(request_configuration=count_config(
        filter=f"catalogId eq '{catalog}'",
    )))
    if ok:
        s.check(f"{name}: is 3", n == 3, f"count={n!r}")

    await s.expect_error(
        "count with $search: 400 BadRequest mentioning $search",
        assignments.count.get(request_configuration=count_config(search="catalog")),
        400, "BadRequest", message_mentions="$search",
    )
    await s.expect_error(
        "count with a $filter that does not parse: 400 BadRequest",
        assignments.count.get(request_configuration=count_config(filter="catalogId eq")),
        400, "BadRequest",
    )
    await s.expect_error(
        "count with a token whose signature is wrong: 401 InvalidAuthenticationToken",
        bad_token.count.get(request_configuration=count_config(filter=f"catalogId eq '{catalog}'")),
        401, "InvalidAuthenticationToken",
    )


async def filter_by_current_user(
    s: Suite,
    assignments: AccessPackageAssignmentsRequestBuilder,
    users: list[tuple[str, AccessPackageAssignmentsRequestBuilder]],
) -> None:
    s.section("filterByCurrentUser(on='target'): each token sees its own assignments")
    (user_a, as_a), (user_b, as_b) = users
    package = str(uuid.uuid4())
    # 5 for user A (3 Delivered, 2 Expired), 2 for user B, 3 for other targets.
    targets = [user_a] * 5 + [user_b] * 2 + [str(uuid.uuid4()) for _ in range(3)]
    owned: dict[str, list[str]] = {}
    delivered_a: set[str] = set()
    all_ids: set[str] = set()
    for i, target in enumerate(targets):
        state = "Delivered" if i % 2 == 0 else "Expired"
        ok, created = await s.call(
            f"post assignment {i + 1} of {len(targets)} for accessPackageId {package}, targetId {target}",
            assignments.post(AccessPackageAssignment(
                access_package_id=package, assignment_policy_id=unique("policy"), target_id=target,
                assignment_state=state,
            )),
        )
        if not ok or created is None:
            s.record("filterByCurrentUser setup", False,
                     f"could not create the {len(targets)} assignments; skipping the filterByCurrentUser checks")
            return
        owned.setdefault(target, []).append(created.id)
        all_ids.add(created.id)
        if target == user_a and state == "Delivered":
            delivered_a.add(created.id)
    mine_a, mine_b = set(owned[user_a]), set(owned[user_b])

    async def walk_mine(name: str, who: AccessPackageAssignmentsRequestBuilder,
                        config: Optional[RequestConfiguration] = None) -> Optional[list[list[AccessPackageAssignment]]]:
        function = who.filter_by_current_user_with_on("target")
        ok, page = await s.call(name, function.get(request_configuration=config))
        if not ok:
            return None
        if page is None:
            s.record(f"{name}: a page", False, "the SDK returned None for the first page")
            return None
        return await walk(s, name, function, page)

    for label, oid, who, want in (("user A", user_a, as_a, mine_a), ("user B", user_b, as_b, mine_b)):
        name = f"{label} ({oid}): filterByCurrentUser(on='target')"
        pages = await walk_mine(name, who)
        if pages is not None:
            items = [a for p in pages for a in p]
            ids = [a.id for a in items]
            s.check(f"{name}: exactly its {len(want)} assignments, each once",
                    sorted(ids) == sorted(want), f"ids {ids}, expected {sorted(want)}")
            wrong = [summary(a) for a in items if a.target_id != oid or a.access_package_id != package]
            s.check(f"{name}: every item has targetId {oid} and every property", not wrong, "\n".join(wrong[:5]))

    name = "user A: filterByCurrentUser(on='target') $top=2, $count=true"
    function = as_a.filter_by_current_user_with_on("target")
    ok, page = await s.call(name, function.get(request_configuration=mine_config(top=2, count=True)))
    if ok and page is not None:
        s.check(f"{name}: the first page has 2 items", len(page.value or []) == 2,
                f"{len(page.value or [])} items: {[summary(a) for a in page.value or []]}")
        s.check(f"{name}: odata_count is 5", page.odata_count == 5, f"odata_count={page.odata_count!r}")
        link = page.odata_next_link
        s.check(f"{name}: odata_next_link is an absolute URL to filterByCurrentUser(on='target')",
                isinstance(link, str) and link.startswith("http")
                and "/accessPackageAssignments/filterByCurrentUser(on='target')" in unquote(link),
                f"odata_next_link={link!r}")
        pages = await walk(s, name, function, page)
        if pages is not None:
            ids = [a.id for p in pages for a in p]
            s.check(f"{name}: following odata_next_link walks 3 pages of 2, 2, 1",
                    [len(p) for p in pages] == [2, 2, 1], f"page sizes {[len(p) for p in pages]}")
            s.check(f"{name}: the pages hold each of user A's 5 ids exactly once",
                    sorted(ids) == sorted(mine_a), f"ids {ids}, expected {sorted(mine_a)}")

    name = "user A: filterByCurrentUser(on='target') $filter=assignmentState eq 'Delivered', $top=2"
    pages = await walk_mine(name, as_a, mine_config(filter="assignmentState eq 'Delivered'", top=2))
    if pages is not None:
        ids = [a.id for p in pages for a in p]
        s.check(f"{name}: 2 pages of 2, 1", [len(p) for p in pages] == [2, 1], f"page sizes {[len(p) for p in pages]}")
        s.check(f"{name}: exactly user A's 3 Delivered", sorted(ids) == sorted(delivered_a),
                f"ids {ids}, expected {sorted(delivered_a)}")

    name = f"user A: filterByCurrentUser(on='target') $filter=targetId eq '{user_b}' (user B's)"
    pages = await walk_mine(name, as_a, mine_config(filter=f"targetId eq '{user_b}'", count=True))
    if pages is not None:
        ids = [a.id for p in pages for a in p]
        s.check(f"{name}: is empty ($filter narrows the function, never widens it)", not ids, f"ids {ids}")

    name = "user A: filterByCurrentUser(on='target') $orderby=id desc, $select=targetId"
    pages = await walk_mine(name, as_a, mine_config(orderby=["id desc"], select=["targetId"]))
    if pages is not None:
        items = [a for p in pages for a in p]
        ids = [a.id for a in items]
        s.check(f"{name}: user A's 5 ids, in descending order", ids == sorted(mine_a, reverse=True),
                f"ids {ids}, expected {sorted(mine_a, reverse=True)}")
        extra = [f"{a.id}: {p}={getattr(a, p)!r}" for a in items for p in PROPERTIES
                 if p != "target_id" and getattr(a, p) is not None]
        s.check(f"{name}: every item has id and targetId and nothing else",
                not extra and all(a.target_id == user_a for a in items),
                "\n".join(extra) or "\n".join(summary(a) for a in items))

    name = "the ReadWrite token (subject local-admin): filterByCurrentUser(on='target')"
    pages = await walk_mine(name, assignments, mine_config(top=999))
    if pages is not None:
        seen = all_ids & {a.id for p in pages for a in p}
        s.check(f"{name}: none of the {len(all_ids)} assignments created for other targets",
                not seen, f"unexpected {sorted(seen)}")

    name = f"count $filter=target/objectId eq '{user_a}' (alias of targetId)"
    ok, n = await s.call(name, assignments.count.get(request_configuration=count_config(
        filter=f"target/objectId eq '{user_a}'",
    )))
    if ok:
        s.check(f"{name}: is 5", n == 5, f"count={n!r}")

    await s.expect_error(
        "user A: filterByCurrentUser(on='createdBy'): 400 BadRequest",
        as_a.filter_by_current_user_with_on("createdBy").get(),
        400, "BadRequest",
    )


async def unsupported_options(s: Suite, base_url: str, assignments: AccessPackageAssignmentsRequestBuilder) -> None:
    s.section("query options: an unknown one is a 400 on every route (raw URLs through with_url)")
    collection_url = f"{base_url}/identityGovernance/entitlementManagement/accessPackageAssignments"
    catalog = str(uuid.uuid4())
    ok, created = await s.call("post an assignment for the query option checks", assignments.post(
        AccessPackageAssignment(catalog_id=catalog, access_package_id=unique("package"),
                                assignment_policy_id=unique("policy"), target_id=unique("target"))))
    if not ok or created is None:
        return

    dollarless = f"catalogId eq '{catalog}'"
    url = f"{collection_url}/$count?filter={quote(dollarless)}"
    name = f"count.with_url(.../$count?filter={dollarless}) (beta: filter without $)"
    ok, n = await s.call(name, assignments.count.with_url(url).get())
    if ok:
        s.check(f"{name}: is 1", n == 1, f"count={n!r}")

    mine = assignments.filter_by_current_user_with_on("target")
    item = assignments.by_access_package_assignment_id(created.id)
    for name, url, send in (
        ("list", collection_url, lambda u: assignments.with_url(u).get()),
        ("count", f"{collection_url}/$count", lambda u: assignments.count.with_url(u).get()),
        ("filterByCurrentUser(on='target')", f"{collection_url}/filterByCurrentUser(on='target')",
         lambda u: mine.with_url(u).get()),
        ("get", f"{collection_url}/{created.id}", lambda u: item.with_url(u).get()),
    ):
        await s.expect_error(f"{name}: with_url({url}?foo=bar): 400 BadRequest mentioning 'foo'",
                             send(f"{url}?foo=bar"), 400, "BadRequest", message_mentions="foo")


# --- main -----------------------------------------------------------------------------------------


def tampered(token: str) -> str:
    """The token with its signature changed (a valid-looking JWT the server must refuse)."""
    head, _, signature = token.rpartition(".")
    if not head or not signature:
        return token + "x"
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{head}.{flipped}"


async def run(args: argparse.Namespace) -> int:
    recorder = Recorder(args.verbose)
    s = Suite(recorder)

    def builder(token: str) -> AccessPackageAssignmentsRequestBuilder:
        client = make_client(args.base_url, token, recorder)
        return client.identity_governance.entitlement_management.access_package_assignments

    assignments = builder(args.token)
    read_only = builder(args.read_token)
    bad_token = builder(tampered(args.token))
    users = [(args.user_a, builder(args.user_a_token)), (args.user_b, builder(args.user_b_token))]
    print(f"msgraph-beta-sdk {SDK_VERSION} against {args.base_url}", flush=True)

    await create_and_get(s, assignments)
    await errors(s, assignments, read_only, bad_token, builder("not-a-jwt"))
    await collection(s, assignments, read_only)
    await count(s, assignments, read_only, bad_token)
    await filter_by_current_user(s, assignments, users)
    await unsupported_options(s, args.base_url, assignments)

    print()
    if s.failures:
        print("failed:")
        for name in s.failures:
            print(f"  {name}")
        print()
    print(f"{s.passed} passed, {s.failed} failed", flush=True)
    return 1 if s.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("GRAPH_BASE_URL"),
                        help="e.g. http://127.0.0.1:8080/beta (env GRAPH_BASE_URL)")
    parser.add_argument("--token", default=os.environ.get("GRAPH_TOKEN"),
                        help="an EntitlementManagement.ReadWrite.All token (env GRAPH_TOKEN)")
    parser.add_argument("--read-token", default=os.environ.get("GRAPH_READ_TOKEN"),
                        help="an EntitlementManagement.Read.All token (env GRAPH_READ_TOKEN)")
    for user in ("a", "b"):
        env = f"GRAPH_USER_{user.upper()}"
        parser.add_argument(f"--user-{user}", default=os.environ.get(env),
                            help=f"user {user.upper()}'s object id, no other assignment's targetId (env {env})")
        parser.add_argument(f"--user-{user}-token", default=os.environ.get(f"{env}_TOKEN"),
                            help=f"a token whose oid is user {user.upper()}'s object id (env {env}_TOKEN)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every HTTP exchange")
    args = parser.parse_args()
    required = ("base_url", "token", "read_token", "user_a", "user_a_token", "user_b", "user_b_token")
    missing = [n for n in required if not getattr(args, n)]
    if missing:
        parser.error("missing " + ", ".join("--" + n.replace("_", "-") for n in missing))
    if args.user_a == args.user_b:
        parser.error("--user-a and --user-b must be distinct")
    args.base_url = args.base_url.rstrip("/")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
