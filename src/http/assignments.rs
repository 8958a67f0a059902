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
    query::ListOptions,
};
use crate::{
    auth,
    domain::{AssignmentId, Error},
    proto::v1::{
        AccessPackageAssignment, CreateAssignmentRequest, DeleteAssignmentRequest,
        GetAssignmentRequest, ListAssignmentsRequest,
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
        origin(&uri, &headers),
        created.id.as_deref().unwrap_or_default()
    );
    let mut response = entity_response(StatusCode::CREATED, &created, None)?;
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
    description = "Needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All`.",
    params(("id" = String, Path, description = "The assignment's id, a GUID")),
    responses(
        (status = 200, description = "The assignment", body = super::openapi::AccessPackageAssignment),
        (status = 400, description = "The id is not a GUID", body = ODataError),
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
    let Path(id) = id.map_err(|_| {
        ApiError::bad_request("The id in the URL is not valid percent-encoded UTF-8.")
    })?;
    let found = state
        .call(
            metadata,
            GetAssignmentRequest { id },
            Retry::Once,
            |mut c, r| async move { c.get_assignment(r).await },
        )
        .await?;

    let prefix = uri.path().split(COLLECTION).next().unwrap_or_default();
    let context_url = format!(
        "{}{prefix}/$metadata#accessPackageAssignments/$entity",
        origin(&uri, &headers)
    );
    entity_response(StatusCode::OK, &found, Some(&context_url))
}

/// `GET {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments`
#[utoipa::path(
    get,
    path = COLLECTION,
    operation_id = "identityGovernance.entitlementManagement.ListAccessPackageAssignments",
    tag = TAG,
    summary = "List accessPackageAssignments",
    description = "Needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All`. Query options not listed here (e.g. `$expand`, `$skip`, `$search`) are refused with 400; options without `$` are ignored.",
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
    let options = ListOptions::parse(uri.query())?;
    let page_size = match options.top {
        None => 0,
        // 0 would mean "the default" upstream; $top=0 is no page at all.
        Some(0) => {
            return Err(ApiError::bad_request(
                "Invalid value '0' for the query option '$top': a whole number from 1 to 999 is expected.",
            ));
        }
        Some(top) => top,
    };
    let select = (!options.select.is_empty()).then(|| prost_types::FieldMask {
        paths: options
            .select
            .iter()
            .map(|p| p.field_name().to_owned())
            .collect(),
    });
    let message = ListAssignmentsRequest {
        page_size,
        page_token: options.skiptoken.clone(),
        filter: options.filter.clone(),
        select,
        order_by: options.orderby.clone(),
        include_total_count: options.count,
    };
    let page = state
        .call(metadata, message, Retry::Once, |mut c, r| async move {
            c.list_assignments(r).await
        })
        .await?;

    let origin = origin(&uri, &headers);
    let prefix = uri.path().split(COLLECTION).next().unwrap_or_default();
    let mut odata_context = format!("{origin}{prefix}/$metadata#accessPackageAssignments");
    if !options.select.is_empty() {
        let names: Vec<&str> = options.select.iter().map(|p| p.name()).collect();
        odata_context = format!("{odata_context}({})", names.join(","));
    }
    let next_link = (!page.next_page_token.is_empty())
        .then(|| options.next_link(&format!("{origin}{}", uri.path()), &page.next_page_token));
    let body = graph_json::write_collection(&graph_json::CollectionPage {
        odata_context: &odata_context,
        count: page.total_count,
        next_link: next_link.as_deref(),
        items: &page.assignments,
        selection: options.selection(),
    })
    .map_err(|e| {
        tracing::error!(error = %e, "the upstream answered an assignment that cannot be written as Graph JSON");
        ApiError::internal()
    })?;
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
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let metadata = upstream_metadata(&headers, &context)?;
    let Path(id) = id.map_err(|_| {
        ApiError::bad_request("The id in the URL is not valid percent-encoded UTF-8.")
    })?;
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

fn entity_response(
    status: StatusCode,
    assignment: &AccessPackageAssignment,
    odata_context: Option<&str>,
) -> Result<Response, ApiError> {
    let body = graph_json::write_assignment(assignment, odata_context).map_err(|e| {
        tracing::error!(error = %e, "the upstream answered an assignment that cannot be written as Graph JSON");
        ApiError::internal()
    })?;
    Ok((status, [(header::CONTENT_TYPE, GRAPH_JSON)], body).into_response())
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
    crate::telemetry::inject(&context.trace, &mut metadata);
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

/// `http://host` from the request's Host header (HTTP/1.1) or, when it has none,
/// its `:authority` (HTTP/2 has no Host header); "" (a path-only URL) when it has
/// neither, or an invalid Host.
fn origin(uri: &Uri, headers: &HeaderMap) -> String {
    match headers.get(header::HOST) {
        Some(host) => host
            .to_str()
            .ok()
            .and_then(|host| host.parse::<axum::http::uri::Authority>().ok()),
        None => uri.authority().cloned(),
    }
    .map(|authority| format!("http://{authority}"))
    .unwrap_or_default()
}
