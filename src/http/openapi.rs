//! The route table of the HTTP face and its OpenAPI 3.1 document, served at
//! `/openapi.json`. Both come from one place: every route is a handler annotated
//! with `#[utoipa::path]`, registered through [`utoipa_axum`]'s `routes!`, which
//! hands the same handlers to the axum router and their operations to the
//! document. So a route cannot be served without being documented, nor documented
//! without being served (`tests/api/docs.rs` checks both from outside).
//!
//! The annotations say what is particular to an operation; [`finish`] adds what
//! the middleware does for every one (the `client-request-id` and `request-id`
//! headers, Graph's error body) and the bearer scheme. The schemas of the entity
//! are built from the model in [`super::metadata`], like the CSDL document.

use std::borrow::Cow;

use axum::{
    Extension, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        Components, ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Schema,
        header::HeaderBuilder,
        path::{Operation, ParameterBuilder, ParameterIn, PathItem},
        schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        server::Server,
    },
};
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter},
    routes,
};

use super::{
    ApiError, AppState, COLLECTION, PREFIXES, assignments,
    metadata::{self, EdmProperty},
};
use crate::{
    config::PublicUrl,
    domain::{Kind, Property},
    service::MAX_PAGE_SIZE,
};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";
/// The tag of the accessPackageAssignments operations.
pub const TAG: &str = "accessPackageAssignments";
/// The tag of the operational routes.
pub const SERVICE_TAG: &str = "service";
/// The name of the shared Graph error response in `components.responses`.
const ERROR_RESPONSE: &str = "error";

/// The routes of the HTTP face, all documented, with `/openapi.json` serving the
/// document built from them; its `servers` is `public_url` (`--public-url`) when
/// one is set.
pub(super) fn router(public_url: Option<&PublicUrl>) -> Router<AppState> {
    let (router, document) = documented_routes().split_for_parts();
    let json = with_servers(finish(document), public_url)
        .to_json()
        .expect("the OpenAPI document is plain data and always serializes");
    router.layer(Extension(Document(Bytes::from(json))))
}

/// The document with `servers` naming the public base URL, when there is one;
/// otherwise as it is.
fn with_servers(mut document: OpenApi, public_url: Option<&PublicUrl>) -> OpenApi {
    if let Some(public_url) = public_url {
        document.servers = Some(vec![Server::new(public_url.base())]);
    }
    document
}

/// The OpenAPI document of the HTTP face, as `GET /openapi.json` serves it.
#[cfg(test)]
fn document() -> OpenApi {
    finish(documented_routes().into_openapi())
}

/// Every route, each one registered together with its operation.
fn documented_routes() -> OpenApiRouter<AppState> {
    let mut api = OpenApiRouter::with_openapi(base());
    for prefix in PREFIXES {
        api = api
            .routes(prefixed(prefix, create_routes()))
            .routes(prefixed(prefix, routes!(assignments::list)))
            .routes(prefixed(prefix, routes!(assignments::count)))
            .routes(prefixed(prefix, filter_by_current_user_routes()))
            .routes(prefixed(
                prefix,
                routes!(assignments::get, assignments::delete),
            ))
            .routes(prefixed(prefix, routes!(metadata::metadata)));
    }
    api.routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
}

/// `POST` on the collection and on its `/$ref` form (the seed page's) are one
/// handler: the same method router is registered on both paths, each with its
/// own operation.
fn create_routes() -> UtoipaMethodRouter<AppState> {
    let (schemas, mut paths, method_router) = routes!(assignments::create);
    let mut item = paths
        .paths
        .get(COLLECTION)
        .cloned()
        .expect("create is documented on the collection");
    if let Some(operation) = item.post.as_mut() {
        operation.operation_id = Some(
            "identityGovernance.entitlementManagement.CreateRefAccessPackageAssignments".into(),
        );
        operation.summary = Some("Create an accessPackageAssignment (the `$ref` form)".into());
        operation.description = Some(
            "The form of create on the seed's page: the same as `POST` on the collection.".into(),
        );
    }
    paths.paths.insert(format!("{COLLECTION}/$ref"), item);
    (schemas, paths, method_router)
}

/// The caller's own list takes the list's query options: its operation is given the
/// list's parameters, documented once on the list.
fn filter_by_current_user_routes() -> UtoipaMethodRouter<AppState> {
    let (_, list, _) = routes!(assignments::list);
    let parameters = list
        .paths
        .get(COLLECTION)
        .and_then(|item| item.get.as_ref())
        .and_then(|operation| operation.parameters.clone());
    let (schemas, mut paths, method_router) = routes!(assignments::filter_by_current_user);
    for item in paths.paths.values_mut() {
        if let Some(operation) = item.get.as_mut() {
            operation.parameters.clone_from(&parameters);
        }
    }
    (schemas, paths, method_router)
}

/// The routes under a version prefix: each path and operation id gets the prefix.
fn prefixed(
    prefix: &str,
    (schemas, mut paths, method_router): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    if prefix.is_empty() {
        return (schemas, paths, method_router);
    }
    let label = prefix.trim_start_matches('/');
    paths.paths = paths
        .paths
        .into_iter()
        .map(|(path, mut item)| {
            for operation in operations_mut(&mut item) {
                if let Some(id) = operation.operation_id.as_mut() {
                    *id = format!("{label}.{id}");
                }
            }
            (format!("{prefix}{path}"), item)
        })
        .collect();
    (schemas, paths, method_router)
}

/// The document before any route: info, and the components no annotation names.
fn base() -> OpenApi {
    let mut document = OpenApi::default();
    document.info.title = env!("CARGO_PKG_NAME").to_owned();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document.info.description = Some(format!(
        "{}.\n\nThe accessPackageAssignments collection of Microsoft Graph's entitlement management, answered under each of the prefixes {}. Every response carries `request-id`, `client-request-id` and `OData-Version: 4.0`; every error is Graph's error body. The OData model is at `{{prefix}}/$metadata`.",
        env!("CARGO_PKG_DESCRIPTION"),
        PREFIXES
            .iter()
            .map(|p| if p.is_empty() {
                "\"\" (none)".to_owned()
            } else {
                format!("`{p}`")
            })
            .collect::<Vec<_>>()
            .join(", "),
    ));
    document
}

/// Adds what the middleware and the token check do for every operation.
fn finish(mut document: OpenApi) -> OpenApi {
    let components = document.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT access token: `Authorization: Bearer <token>`. Reading needs `EntitlementManagement.Read.All` or `EntitlementManagement.ReadWrite.All` (in `scp` or `roles`); creating and deleting need `EntitlementManagement.ReadWrite.All`.",
                ))
                .build(),
        ),
    );
    let mut error_schemas = Vec::new();
    <ODataError as ToSchema>::schemas(&mut error_schemas);
    error_schemas.push((ODataError::name().into_owned(), ODataError::schema()));
    components.schemas.extend(error_schemas);
    components.responses.insert(
        ERROR_RESPONSE.to_owned(),
        RefOr::T(with_common_headers(
            ResponseBuilder::new()
                .description("Graph's error body")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ODataError::name())))
                        .build(),
                )
                .header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some(
                            "On 429 and 503: the seconds to wait before trying again.",
                        ))
                        .build(),
                )
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(string(None))
                        .description(Some("On 401: `Bearer`."))
                        .build(),
                )
                .build(),
        )),
    );

    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.push(
                ParameterBuilder::new()
                    .name("client-request-id")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "The caller's id for the request (at most 128 characters), echoed in the response and in an error's innerError; the request-id is used when it is missing.",
                    ))
                    .schema(Some(string(None)))
                    .build(),
            );
            let secured = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            let responses = &mut operation.responses.responses;
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    *response = with_common_headers(std::mem::take(response));
                }
            }
            let mut codes = vec!["4XX", "5XX"];
            if secured {
                codes.extend(["401", "403"]);
            }
            for code in codes {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| Ref::from_response_name(ERROR_RESPONSE).into());
            }
        }
    }
    document
}

/// The headers the request-context middleware puts on every response.
fn with_common_headers(mut response: utoipa::openapi::Response) -> utoipa::openapi::Response {
    for (name, description) in [
        ("request-id", "A new GUID for every request."),
        (
            "client-request-id",
            "The caller's client-request-id, or the request-id when it sent none.",
        ),
        ("OData-Version", "Always 4.0."),
    ] {
        response.headers.entry(name.to_owned()).or_insert_with(|| {
            HeaderBuilder::new()
                .schema(string(None))
                .description(Some(description))
                .build()
        });
    }
    response
}

/// The operations of a path item, whatever their method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The serialized document, handed to [`openapi_json`].
#[derive(Clone)]
struct Document(Bytes);

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = OPENAPI_PATH,
    operation_id = "openapi",
    tag = SERVICE_TAG,
    summary = "This OpenAPI document",
    description = "The OpenAPI 3.1 document of the HTTP face, generated from its route table. No token is needed.",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object)),
)]
async fn openapi_json(Extension(document): Extension<Document>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        document.0,
    )
        .into_response()
}

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = SERVICE_TAG,
    summary = "Liveness",
    responses((status = 200, description = "The process serves HTTP", content_type = "text/plain", body = String, example = "ok")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = SERVICE_TAG,
    summary = "Readiness",
    description = "Ready while the process is serving (not draining), its store answers (when it runs the service) and an upstream gRPC service is in rotation: the same rule as the admin listener's `/readyz`.",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String, example = "ready"),
        (status = 503, description = "Not ready", body = ODataError),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => {
            tracing::debug!(reason = why, "not ready");
            ApiError::from_http_status(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    }
}

// The schemas. They are built by hand from the model rather than derived from
// serde structs: the Graph JSON shape has one home (`graph_json`, written from
// `Property`), and these read the same `Property` list.

/// `microsoft.graph.accessPackageAssignment` as the service writes it.
pub struct AccessPackageAssignment;

impl PartialSchema for AccessPackageAssignment {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .description(Some(
                "An access package assignment. A property the assignment does not have is null; in a list with `$select`, only the selected properties and id are present.",
            ))
            .property(
                "@odata.context",
                string(Some("uri-reference")),
            )
            .property(
                "@odata.type",
                string(None)
                    .enum_values(Some([crate::http::graph_json::ODATA_TYPE])),
            );
        for p in metadata::properties() {
            object = object.property(p.property.name(), property_schema(p, !p.key));
        }
        Schema::Object(object.build()).into()
    }
}

impl ToSchema for AccessPackageAssignment {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}.{}", metadata::NAMESPACE, metadata::ENTITY_TYPE))
    }
}

/// The body of a create: an accessPackageAssignment with what the service requires.
pub struct NewAccessPackageAssignment;

impl PartialSchema for NewAccessPackageAssignment {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .description(Some(
                "The accessPackageAssignment to create. Unknown properties are refused. Without an id, the service generates one; with one (a GUID), the create is idempotent.",
            ))
            .property(
                "@odata.type",
                string(None)
                    .enum_values(Some([crate::http::graph_json::ODATA_TYPE])),
            );
        for p in metadata::properties() {
            object = object.property(p.property.name(), property_schema(p, !p.required));
            if p.required {
                object = object.required(p.property.name());
            }
        }
        Schema::Object(object.build()).into()
    }
}

impl ToSchema for NewAccessPackageAssignment {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NewAccessPackageAssignment")
    }
}

/// One page of the collection.
pub struct AccessPackageAssignmentCollection;

impl PartialSchema for AccessPackageAssignmentCollection {
    fn schema() -> RefOr<Schema> {
        Schema::Object(
            ObjectBuilder::new()
                .property("@odata.context", string(Some("uri-reference")))
                .required("@odata.context")
                .property(
                    "@odata.count",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .description(Some("The number of matching assignments, with `$count=true`.")),
                )
                .property(
                    "@odata.nextLink",
                    string(Some("uri-reference"))
                        .description(Some("The URL of the next page, when there is one: this request's options with a `$skiptoken`.")),
                )
                .property(
                    "value",
                    ArrayBuilder::new()
                        .items(Ref::from_schema_name(AccessPackageAssignment::name())),
                )
                .required("value")
                .build(),
        )
        .into()
    }
}

impl ToSchema for AccessPackageAssignmentCollection {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!(
            "{}.{}CollectionResponse",
            metadata::NAMESPACE,
            metadata::ENTITY_TYPE
        ))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            AccessPackageAssignment::name().into_owned(),
            AccessPackageAssignment::schema(),
        ));
    }
}

/// Graph's error body: `{"error":{"code","message","innerError":{…}}}`.
pub struct ODataError;

impl PartialSchema for ODataError {
    fn schema() -> RefOr<Schema> {
        Schema::Object(
            ObjectBuilder::new()
                .property("error", Ref::from_schema_name(MAIN_ERROR))
                .required("error")
                .build(),
        )
        .into()
    }
}

impl ToSchema for ODataError {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("microsoft.graph.ODataErrors.ODataError")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let main = ObjectBuilder::new()
            .property(
                "code",
                string(None)
                    .description(Some("Graph's error code, e.g. `BadRequest`, `InvalidAuthenticationToken`, `Request_ResourceNotFound`."))
                    .examples(["BadRequest"]),
            )
            .required("code")
            .property(
                "message",
                string(None)
                    .description(Some("What went wrong and what to do about it.")),
            )
            .required("message")
            .property("innerError", Ref::from_schema_name(INNER_ERROR))
            .required("innerError")
            .build();
        let inner = ObjectBuilder::new()
            .property(
                "date",
                string(None)
                    .description(Some("When the error happened, in UTC, ISO 8601 without fraction or offset, as Graph writes it."))
                    .examples(["2021-10-31T05:13:50"]),
            )
            .required("date")
            .property(
                "request-id",
                string(None)
                    .description(Some("The response's request-id header.")),
            )
            .required("request-id")
            .property(
                "client-request-id",
                string(None)
                    .description(Some("The response's client-request-id header.")),
            )
            .required("client-request-id")
            .build();
        schemas.push((MAIN_ERROR.to_owned(), Schema::Object(main).into()));
        schemas.push((INNER_ERROR.to_owned(), Schema::Object(inner).into()));
    }
}

const MAIN_ERROR: &str = "microsoft.graph.ODataErrors.MainError";
const INNER_ERROR: &str = "microsoft.graph.ODataErrors.InnerError";

/// The value of `$select`: property names, comma-separated, or `*`.
pub struct Select;

impl PartialSchema for Select {
    fn schema() -> RefOr<Schema> {
        let names = Property::ALL
            .iter()
            .map(|p| p.name())
            .chain(std::iter::once("*"));
        Schema::Array(
            ArrayBuilder::new()
                .items(string(None).enum_values(Some(names)))
                .min_items(Some(1))
                .build(),
        )
        .into()
    }
}

impl ToSchema for Select {}

/// The value of `$top`: a page size.
pub struct Top;

impl PartialSchema for Top {
    fn schema() -> RefOr<Schema> {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(1))
                .maximum(Some(MAX_PAGE_SIZE))
                .build(),
        )
        .into()
    }
}

impl ToSchema for Top {}

/// The JSON schema of one property, from its EDM type.
fn property_schema(p: EdmProperty, nullable: bool) -> ObjectBuilder {
    let (json_type, format) = match p.property.kind() {
        Kind::Bool => (Type::Boolean, None),
        Kind::DateTime => (
            Type::String,
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
        ),
        Kind::Key => (Type::String, Some(SchemaFormat::Custom("uuid".into()))),
        Kind::Text | Kind::RequiredText => (Type::String, None),
    };
    let schema_type = if nullable {
        SchemaType::from_iter([json_type, Type::Null])
    } else {
        SchemaType::Type(json_type)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .format(format)
        .description(Some(format!("{} ({})", p.property.name(), p.edm_type)))
}

/// A string schema, with a format when given.
fn string(format: Option<&str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format.map(|f| SchemaFormat::Custom(f.to_owned())))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn operation_ids_are_unique_and_every_prefix_has_every_route() {
        let document = document();
        let mut ids = HashSet::new();
        for item in document.paths.paths.values() {
            for operation in [&item.get, &item.post, &item.delete].into_iter().flatten() {
                let id = operation.operation_id.clone().expect("an operation id");
                assert!(ids.insert(id.clone()), "{id} twice");
            }
        }
        for prefix in PREFIXES {
            for path in [
                format!("{prefix}{COLLECTION}"),
                format!("{prefix}{COLLECTION}/$ref"),
                format!("{prefix}{COLLECTION}/{{id}}"),
                format!("{prefix}/$metadata"),
            ] {
                assert!(document.paths.paths.contains_key(&path), "{path}");
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let json = document().to_json().unwrap();
        assert!(json.starts_with(r#"{"openapi":"3.1.0""#), "{json}");
    }
}
