//! The handlers of the accessPackageAssignments collection: Graph JSON in, an
//! upstream gRPC call, Graph JSON out.

use axum::{
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use super::{
    ApiError, AppState, COLLECTION, RequestContext, Retry, graph_json,
    openapi::{
        AccessPackageAssignmentCollection, NewAccessPackageAssignment, ODataError, Select, TAG, Top,
    },
    query::{Accepts, Dialect, QueryOptions},
};
use crate::{
    auth,
    domain::{AssignmentId, Error, Selection},
    proto::v1::{
        AccessPackageAssignment, CountAssignmentsRequest, CreateAssignmentRequest,
        CurrentUserFilter, DeleteAssignmentRequest, GetAssignmentRequest, ListAssignmentsRequest,
    },
};

/// The longest `Authorization` header forwarded.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// The content type of Graph's JSON answers.
const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// `POST {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments[/$ref]`
#[utoipa::path(
    post,
    path = COLLECTION,
    operation_id = "identityGovernance.entitlementManagement.CreateAccessPackageAssignments",
    tag = TAG,
    summary = "Create an accessPackageAssignment",
    description = "Needs `EntitlementManagement.ReadWrite.All`. Idempotent by id: repeating a create with the same id and content answers 201 with the stored assignment; the same id with other content answers 409.",
    request_body(
        content = NewAccessPackageAssignment,
        content_type = "application/json",
        description = "Graph JSON; `Content-Type: application/json` (charset utf-8, if any) is required. At most 1 MiB.",
    ),
    responses(
        (status = 201, description = "Created: the assignment as stored", body = super::openapi::AccessPackageAssignment,
            headers(("Location" = String, description = "The URL of the new assignment"))),
        (status = 400, description = "The body is not a valid accessPackageAssignment", body = ODataError),
        (status = 409, description = "An assignment with this id exists with other content", body = ODataError),
        (status = 413, description = "The body is larger than 1 MiB", body = ODataError),
        (status = 415, description = "The body is not declared as JSON", body = ODataError),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    axum::Extension(context): axum::Extension<RequestContext>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    options(&uri, Accepts::Nothing)?;
    require_json(&headers)?;
    let body = body.map_err(|rejection| ApiError::from_body_rejection(&rejection))?;
    let assignment =
        graph_json::parse_assignment(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;

    let mut assignment = assignment;
    // With an id, a create is idempotent, so it can be retried safely (here, and
    // by the caller).
    if assignment.id.is_none() {
        assignment.id = Some(AssignmentId::generate().to_string());
    }
    let message = CreateAssignmentRequest {
        assignment: Some(assignment),
    };
    let created = state
        .call(metadata, message, Retry::Once, |mut c, r| async move {
            c.create_assignment(r).await
        })
        .await?;

    let collection_path = uri.path().trim_end_matches("/$ref");
    let location = format!(
        "{}{collection_path}/{}",
        origin(&state, &context, &uri, &headers),
        created.id.as_deref().unwrap_or_default()
    );
    let mut response = entity_response(StatusCode::CREATED, &created, None, Selection::ALL)?;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments/{id}`
#[utoipa::path(
    get,
    path = format!("{COLLECTION}/{{id}}"),
    operation_id = "identityGovernance.entitlementManagement.GetAccessPackageAssignments",
    tag = TAG,
    summary = "Get an accessPackageAssignment",
    description = "Needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All`. Takes `$select` only; any other query option or parameter is refused with 400.",
    params(
        ("id" = String, Path, description = "The assignment's id, a GUID"),
        ("$select" = inline(Option<Select>), Query, style = Form, explode = false, example = json!(["accessPackageId", "targetId"]),
            description = "The properties the assignment carries (id always): comma-separated names, or `*` for all."),
    ),
    responses(
        (status = 200, description = "The assignment", body = super::openapi::AccessPackageAssignment),
        (status = 400, description = "The id is not a GUID, or a query option is unsupported or malformed", body = ODataError),
        (status = 404, description = "No assignment has this id", body = ODataError),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    axum::Extension(context): axum::Extension<RequestContext>,
    uri: Uri,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    let id = path_segment(id)?;
    // The function's segment with its quotes percent-encoded did not match its
    // own route: it is still the function, not an id.
    if let Some(on) = function_argument(&id) {
        let scope = current_user(&on)?;
        return list_assignments(&state, &context, metadata, &uri, &headers, scope).await;
    }
    let options = options(&uri, Accepts::Entity)?;
    let message = GetAssignmentRequest {
        id,
        select: options.select_mask(),
    };
    let found = state
        .call(metadata, message, Retry::Once, |mut c, r| async move {
            c.get_assignment(r).await
        })
        .await?;

    let context_url = format!(
        "{}{}/$metadata#accessPackageAssignments{}/$entity",
        origin(&state, &context, &uri, &headers),
        prefix_of(&uri),
        options.select_suffix(),
    );
    entity_response(
        StatusCode::OK,
        &found,
        Some(&context_url),
        options.selection(),
    )
}

/// `GET {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments/filterByCurrentUser(on='target')`
///
/// The route is the call as Graph clients write it; the same call with its quotes
/// percent-encoded, and the other values of `on`, reach [`get`], which hands them
/// on here.
#[utoipa::path(
    get,
    path = format!("{COLLECTION}/filterByCurrentUser(on='target')"),
    operation_id = "identityGovernance.entitlementManagement.accessPackageAssignments.filterByCurrentUser",
    tag = TAG,
    summary = "List the caller's own accessPackageAssignments",
    description = "Graph's function `filterByCurrentUser`: with `on='target'`, the assignments whose `targetId` is the caller, the `oid` claim of its token (a token without one gets 400). `on='createdBy'` is not supported (400). Takes the query options of the list (documented with it), which apply within the caller's own. Needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All`.",
    responses(
        (status = 200, description = "A page of the caller's assignments", body = AccessPackageAssignmentCollection),
        (status = 400, description = "The token has no `oid`, or a query option is unsupported, repeated or malformed", body = ODataError),
    ),
    security(("bearer" = [])),
)]
pub async fn filter_by_current_user(
    State(state): State<AppState>,
    axum::Extension(context): axum::Extension<RequestContext>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    list_assignments(
        &state,
        &context,
        metadata,
        &uri,
        &headers,
        CurrentUserFilter::Target,
    )
    .await
}

/// `GET {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments/$count`
#[utoipa::path(
    get,
    path = format!("{COLLECTION}/$count"),
    operation_id = "identityGovernance.entitlementManagement.accessPackageAssignments.GetCount",
    tag = TAG,
    summary = "Count accessPackageAssignments",
    description = "The number of assignments that match `$filter` (all without one), as `text/plain`. Needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All`. `$search` and every other option are refused with 400.",
    params(
        ("$filter" = Option<String>, Query, example = "assignmentState eq 'Delivered'",
            description = "As on the list."),
    ),
    responses(
        (status = 200, description = "The number of matching assignments", content_type = "text/plain", body = i64),
        (status = 400, description = "A query option is unsupported, repeated or malformed", body = ODataError),
    ),
    security(("bearer" = [])),
)]
pub async fn count(
    State(state): State<AppState>,
    axum::Extension(context): axum::Extension<RequestContext>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    let options = options(&uri, Accepts::Count)?;
    let message = CountAssignmentsRequest {
        filter: options.filter,
        filter_by_current_user: CurrentUserFilter::Unspecified.into(),
    };
    let counted = state
        .call(metadata, message, Retry::Once, |mut c, r| async move {
            c.count_assignments(r).await
        })
        .await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        counted.count.to_string(),
    )
        .into_response())
}

/// `GET {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments`
#[utoipa::path(
    get,
    path = COLLECTION,
    operation_id = "identityGovernance.entitlementManagement.ListAccessPackageAssignments",
    tag = TAG,
    summary = "List accessPackageAssignments",
    description = "Needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All`. Query options not listed here (e.g. `$expand`, `$skip`, `$search`) and any other query parameter are refused with 400. On beta (and without a prefix, and on `/localtest`) the `$` is optional (`filter` is `$filter`); on `/v1.0` it is required.",
    params(
        ("$filter" = Option<String>, Query, example = "assignmentState eq 'Delivered'",
            description = "An OData filter: comparisons (`eq`, `ne`; `lt`, `le`, `gt`, `ge` on expiredDateTime) of a property with a literal, joined by `and`/`or`, in parentheses if needed. `accessPackage/id` stands for accessPackageId and `accessPackageAssignmentPolicy/id` for assignmentPolicyId."),
        ("$top" = inline(Option<Top>), Query, example = 10, description = "The page size."),
        ("$skiptoken" = Option<String>, Query,
            description = "Where the page starts: the opaque token of an `@odata.nextLink`."),
        ("$count" = Option<bool>, Query, example = true,
            description = "Whether to include `@odata.count`, the number of assignments that match."),
        ("$select" = inline(Option<Select>), Query, style = Form, explode = false, example = json!(["accessPackageId", "targetId"]),
            description = "The properties each item carries (id always): comma-separated names, or `*` for all."),
        ("$orderby" = Option<String>, Query, example = "expiredDateTime desc",
            description = "One of `id` or `expiredDateTime`, optionally followed by `asc` or `desc`."),
    ),
    responses(
        (status = 200, description = "A page of assignments", body = AccessPackageAssignmentCollection),
        (status = 400, description = "A query option is unsupported, repeated or malformed", body = ODataError),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    axum::Extension(context): axum::Extension<RequestContext>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    list_assignments(
        &state,
        &context,
        metadata,
        &uri,
        &headers,
        CurrentUserFilter::Unspecified,
    )
    .await
}

/// One page of the collection, or of the caller's own part of it.
async fn list_assignments(
    state: &AppState,
    context: &RequestContext,
    metadata: MetadataMap,
    uri: &Uri,
    headers: &HeaderMap,
    scope: CurrentUserFilter,
) -> Result<Response, ApiError> {
    let options = options(uri, Accepts::Collection)?;
    let message = ListAssignmentsRequest {
        page_size: options.top,
        page_token: options.skiptoken.clone(),
        filter: options.filter.clone(),
        select: options.select_mask(),
        order_by: options.orderby.clone(),
        include_total_count: options.count,
        filter_by_current_user: scope.into(),
    };
    let page = state
        .call(metadata, message, Retry::Once, |mut c, r| async move {
            c.list_assignments(r).await
        })
        .await?;

    let origin = origin(state, context, uri, headers);
    let odata_context = format!(
        "{origin}{}/$metadata#accessPackageAssignments{}",
        prefix_of(uri),
        options.select_suffix()
    );
    let next_link = (!page.next_page_token.is_empty())
        .then(|| options.next_link(&format!("{origin}{}", uri.path()), &page.next_page_token));
    let body = graph_json::write_collection(&graph_json::CollectionPage {
        odata_context: &odata_context,
        count: page.total_count,
        next_link: next_link.as_deref(),
        items: &page.assignments,
        selection: options.selection(),
    })
    .map_err(unwritable)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, GRAPH_JSON)], body).into_response())
}

/// `DELETE {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments/{id}`
#[utoipa::path(
    delete,
    path = format!("{COLLECTION}/{{id}}"),
    operation_id = "identityGovernance.entitlementManagement.DeleteAccessPackageAssignments",
    tag = TAG,
    summary = "Delete an accessPackageAssignment",
    description = "Needs `EntitlementManagement.ReadWrite.All`.",
    params(("id" = String, Path, description = "The assignment's id, a GUID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a GUID", body = ODataError),
        (status = 404, description = "No assignment has this id", body = ODataError),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    axum::Extension(context): axum::Extension<RequestContext>,
    uri: Uri,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    let id = path_segment(id)?;
    options(&uri, Accepts::Nothing)?;
    // Not retried: a delete that reached the service before the failure would
    // answer 404 the second time.
    state
        .call(
            metadata,
            DeleteAssignmentRequest { id },
            Retry::Never,
            |mut c, r| async move { c.delete_assignment(r).await },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One assignment as Graph JSON, with the selected properties.
fn entity_response(
    status: StatusCode,
    assignment: &AccessPackageAssignment,
    odata_context: Option<&str>,
    selection: Selection,
) -> Result<Response, ApiError> {
    let body =
        graph_json::write_selected(assignment, odata_context, selection).map_err(unwritable)?;
    Ok((status, [(header::CONTENT_TYPE, GRAPH_JSON)], body).into_response())
}

/// Where this request's absolute URLs start (see [`super::links`]).
fn origin(state: &AppState, context: &RequestContext, uri: &Uri, headers: &HeaderMap) -> String {
    state
        .links
        .origin(uri, headers, context.connection.as_ref())
}

/// The 500 for an answer of the upstream that Graph JSON cannot express.
fn unwritable(error: serde_json::Error) -> ApiError {
    tracing::error!(error = %error, "the upstream answered an assignment that cannot be written as Graph JSON");
    ApiError::internal()
}

/// The version prefix of the request's path: "", `/beta`, `/v1.0` or `/localtest`.
fn prefix_of(uri: &Uri) -> &str {
    uri.path().split(COLLECTION).next().unwrap_or_default()
}

/// The query options of the request, as a route that takes `accepts` reads them
/// in its version's dialect.
fn options(uri: &Uri, accepts: Accepts) -> Result<QueryOptions, ApiError> {
    QueryOptions::parse(uri.query(), Dialect::of_prefix(prefix_of(uri)), accepts)
}

/// A path segment, percent-decoded.
fn path_segment(segment: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    segment
        .map(|Path(segment)| segment)
        .map_err(|_| ApiError::bad_request("The id in the URL is not valid percent-encoded UTF-8."))
}

/// The `on` argument of a `filterByCurrentUser(on='...')` segment (the function's
/// name in any case), or `None` when the segment is not that call.
fn function_argument(segment: &str) -> Option<String> {
    const NAME: &str = "filterByCurrentUser(";
    let head = segment.get(..NAME.len())?;
    if !head.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let inner = segment[NAME.len()..].strip_suffix(')')?.trim();
    let (parameter, value) = inner.split_once('=')?;
    if !parameter.trim().eq_ignore_ascii_case("on") {
        return None;
    }
    let value = value.trim();
    Some(
        value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value)
            .to_owned(),
    )
}

/// The scope `filterByCurrentUser(on='...')` asks for.
fn current_user(on: &str) -> Result<CurrentUserFilter, ApiError> {
    match on {
        "target" => Ok(CurrentUserFilter::Target),
        "createdBy" => Ok(CurrentUserFilter::CreatedBy),
        other => Err(ApiError::bad_request(format!(
            "'{}' is not a value of accessPackageAssignmentFilterByCurrentUserOptions: use 'target'.",
            crate::domain::quote(other)
        ))),
    }
}

/// The metadata of the upstream call: the caller's bearer token (as
/// [`auth::FORWARDED_AUTHORIZATION`], which HPACK can index) and the request's ids. A
/// request without a token is refused here, before its body is read; the token
/// itself is verified by the service.
fn upstream_metadata(
    headers: &HeaderMap,
    context: &RequestContext,
) -> Result<MetadataMap, ApiError> {
    let unauthenticated = |message| ApiError::from_status(&Error::Unauthenticated(message).into());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| auth::bearer_token(v).is_some_and(|t| !t.is_empty()))
        .ok_or_else(|| unauthenticated(auth::EMPTY_TOKEN))?;
    // No issuer's token comes near this; a longer one cannot be valid, and would not
    // fit the upstream call's headers.
    if authorization.len() > MAX_AUTHORIZATION_BYTES {
        return Err(unauthenticated(auth::INVALID_TOKEN));
    }
    let mut metadata = MetadataMap::with_capacity(5);
    let ascii = |text: &str| AsciiMetadataValue::try_from(text).ok();
    metadata.insert(
        auth::FORWARDED_AUTHORIZATION,
        ascii(authorization).ok_or_else(|| unauthenticated(auth::INVALID_TOKEN))?,
    );
    // The ids name one call each: kept out of HTTP/2's header table (HPACK), where
    // each would take a place, and push out headers that repeat on every call.
    let unique = |text: &str| {
        ascii(text).map(|mut value| {
            value.set_sensitive(true);
            value
        })
    };
    if let Some(value) = unique(&context.request_id) {
        metadata.insert("request-id", value);
    }
    // Only the caller's own: without one, the request id already names the call.
    if let Some(value) = context.client_request_id.as_deref().and_then(unique) {
        metadata.insert("client-request-id", value);
    }
    crate::ops::telemetry::inject(&context.trace, &mut metadata);
    Ok(metadata)
}

/// Refuses a body that is not declared as UTF-8 JSON.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unsupported_media_type)?;
    let mut parts = content_type.split(';').map(str::trim);
    let essence_ok = parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    let charset_ok = parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if essence_ok && charset_ok {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}
