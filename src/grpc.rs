//! The tonic service `entitlement.v1.EntitlementManagement`: authenticates the caller,
//! turns the proto request into a service call and the result back into proto. The
//! one mapping of [`Error`] to `tonic::Status` (with google.rpc details) is here.

use std::{collections::HashMap, sync::Arc, time::Duration};

use prost_types::{FieldMask, Timestamp};
use tonic::{
    Code, Request, Response, Status,
    metadata::MetadataMap,
    service::{Interceptor, interceptor::InterceptedService},
};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::{
    auth::{Access, Authenticator, FORWARDED_AUTHORIZATION, Principal},
    domain::{Assignment, Error, FieldViolation, Property, Selection, for_each_property},
    proto::v1::{
        AccessPackageAssignment, CountAssignmentsRequest, CountAssignmentsResponse,
        CreateAssignmentRequest, CurrentUserFilter, DeleteAssignmentRequest, GetAssignmentRequest,
        ListAssignmentsRequest, ListAssignmentsResponse,
        entitlement_management_server::{EntitlementManagement, EntitlementManagementServer},
    },
    service::{AssignmentService, CountRequest, ListRequest, Scope},
};

/// The `domain` of every google.rpc.ErrorInfo this service sends.
pub const ERROR_DOMAIN: &str = "entitlement-gateway";

/// The gRPC face of the [`AssignmentService`].
pub struct GrpcService {
    service: AssignmentService,
}

/// The interceptor that authenticates every call before its message is decoded,
/// leaving the [`Principal`] in the request's extensions.
#[derive(Clone)]
pub struct Authenticate(Arc<Authenticator>);

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.0.authenticate(credential(request.metadata())?)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The caller's `Authorization` value: from `authorization`, or as the HTTP front
/// forwards it (see [`FORWARDED_AUTHORIZATION`]).
///
/// # Errors
/// `Unauthenticated` when both are present: which one counts would be a guess.
fn credential(metadata: &MetadataMap) -> Result<Option<&str>, Error> {
    match (
        metadata.get("authorization"),
        metadata.get(FORWARDED_AUTHORIZATION),
    ) {
        (Some(_), Some(_)) => {
            tracing::warn!(
                "access token rejected: both authorization and {FORWARDED_AUTHORIZATION} are set"
            );
            Err(Error::Unauthenticated(crate::auth::INVALID_TOKEN))
        }
        (direct, forwarded) => Ok(direct.or(forwarded).and_then(|v| v.to_str().ok())),
    }
}

/// The tonic server of the service, behind its interceptor.
pub type Server = InterceptedService<EntitlementManagementServer<GrpcService>, Authenticate>;

impl GrpcService {
    /// The tonic server, behind the interceptor that verifies bearer tokens.
    pub fn server(service: AssignmentService, authenticator: Arc<Authenticator>) -> Server {
        InterceptedService::new(
            EntitlementManagementServer::new(GrpcService { service }),
            Authenticate(authenticator),
        )
    }
}

/// Checks that the authenticated caller may do `access`; returns the caller.
fn authorize<T>(request: &Request<T>, access: Access) -> Result<Arc<Principal>, Error> {
    let principal = request
        .extensions()
        .get::<Arc<Principal>>()
        .ok_or(Error::Unauthenticated(crate::auth::EMPTY_TOKEN))?;
    principal.require(access)?;
    Ok(principal.clone())
}

/// The scope a list or count asked for, with the caller it is about.
fn scope(filter: i32, caller: &Principal) -> Result<Scope, Error> {
    match CurrentUserFilter::try_from(filter) {
        Ok(CurrentUserFilter::Unspecified) => Ok(Scope::All),
        Ok(CurrentUserFilter::Target) => Ok(Scope::TargetIsCaller(caller.object_id.clone())),
        Ok(CurrentUserFilter::CreatedBy) => Ok(Scope::CreatedByCaller),
        Err(_) => Err(Error::InvalidArgument(vec![FieldViolation::new(
            "filter_by_current_user",
            format!("{filter} is not a value of CurrentUserFilter"),
        )])),
    }
}

/// The paths of a field mask, or none.
fn mask_paths(mask: Option<FieldMask>) -> Vec<String> {
    mask.map(|mask| mask.paths).unwrap_or_default()
}

#[tonic::async_trait]
impl EntitlementManagement for GrpcService {
    async fn create_assignment(
        &self,
        request: Request<CreateAssignmentRequest>,
    ) -> Result<Response<AccessPackageAssignment>, Status> {
        authorize(&request, Access::Write)?;
        let new = request.into_inner().assignment.unwrap_or_default();
        let created = self.service.create(new).await?;
        Ok(Response::new(to_proto(&created)))
    }

    async fn get_assignment(
        &self,
        request: Request<GetAssignmentRequest>,
    ) -> Result<Response<AccessPackageAssignment>, Status> {
        authorize(&request, Access::Read)?;
        let r = request.into_inner();
        let (found, selection) = self.service.get(&r.id, &mask_paths(r.select)).await?;
        Ok(Response::new(select(to_proto(&found), selection)))
    }

    async fn list_assignments(
        &self,
        request: Request<ListAssignmentsRequest>,
    ) -> Result<Response<ListAssignmentsResponse>, Status> {
        let caller = authorize(&request, Access::Read)?;
        let r = request.into_inner();
        let page = self
            .service
            .list(ListRequest {
                page_size: r.page_size,
                page_token: r.page_token,
                filter: r.filter,
                select: mask_paths(r.select),
                order_by: r.order_by,
                include_total_count: r.include_total_count,
                scope: scope(r.filter_by_current_user, &caller)?,
            })
            .await?;
        Ok(Response::new(ListAssignmentsResponse {
            assignments: page
                .items
                .iter()
                .map(|a| select(to_proto(a), page.selection))
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            total_count: page.total.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        }))
    }

    async fn count_assignments(
        &self,
        request: Request<CountAssignmentsRequest>,
    ) -> Result<Response<CountAssignmentsResponse>, Status> {
        let caller = authorize(&request, Access::Read)?;
        let r = request.into_inner();
        let count = self
            .service
            .count(CountRequest {
                filter: r.filter,
                scope: scope(r.filter_by_current_user, &caller)?,
            })
            .await?;
        Ok(Response::new(CountAssignmentsResponse {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        }))
    }

    async fn delete_assignment(
        &self,
        request: Request<DeleteAssignmentRequest>,
    ) -> Result<Response<()>, Status> {
        authorize(&request, Access::Write)?;
        self.service.delete(&request.get_ref().id).await?;
        Ok(Response::new(()))
    }
}

/// Clears the fields a selection leaves out.
fn select(mut p: AccessPackageAssignment, selection: Selection) -> AccessPackageAssignment {
    for property in Property::ALL {
        if !selection.contains(property) {
            p.clear(property);
        }
    }
    p
}

/// [`to_proto`], generated from the assignment's one description.
macro_rules! proto_from_domain {
    ($($variant:ident $name:literal $field:ident $kind:ident [$($column:ident),+] $(offset $offset:ident)?;)*) => {
        /// The message of a stored assignment.
        fn to_proto(a: &Assignment) -> AccessPackageAssignment {
            let mut p = AccessPackageAssignment::default();
            $(proto_from_domain!(@set $kind p.$field, a.$field $(, p.$offset)?);)*
            p
        }
    };
    (@set key $to:expr, $from:expr) => { $to = Some($from.to_string()) };
    (@set text $to:expr, $from:expr) => { $to = $from.clone() };
    (@set required_text $to:expr, $from:expr) => { $to = Some($from.clone()) };
    (@set bool $to:expr, $from:expr) => { $to = $from };
    (@set date_time $to:expr, $from:expr, $offset:expr) => {
        $to = $from.map(|e| Timestamp {
            seconds: e.seconds(),
            // Below 1e9 by construction.
            nanos: e.nanos() as i32,
        });
        // Absent means UTC, as the caller may have sent it.
        $offset = $from.map(|e| e.offset_minutes()).filter(|&m| m != 0);
    };
}

for_each_property!(proto_from_domain);

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let message = error.to_string();
        let info = |details: &mut ErrorDetails, reason: &str, metadata: HashMap<String, String>| {
            details.set_error_info(reason, ERROR_DOMAIN, metadata);
        };
        let mut details = ErrorDetails::new();
        let code = match &error {
            Error::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field, &v.description);
                }
                info(&mut details, "INVALID_ARGUMENT", HashMap::new());
                Code::InvalidArgument
            }
            Error::NotFound(id) => {
                info(
                    &mut details,
                    "ASSIGNMENT_NOT_FOUND",
                    HashMap::from([("id".to_owned(), id.clone())]),
                );
                Code::NotFound
            }
            Error::AlreadyExists(id) => {
                info(
                    &mut details,
                    "ASSIGNMENT_ALREADY_EXISTS",
                    HashMap::from([("id".to_owned(), id.to_string())]),
                );
                Code::AlreadyExists
            }
            Error::Unauthenticated(_) => {
                info(&mut details, "INVALID_AUTHENTICATION_TOKEN", HashMap::new());
                Code::Unauthenticated
            }
            Error::PermissionDenied(permission) => {
                info(
                    &mut details,
                    "INSUFFICIENT_PERMISSIONS",
                    HashMap::from([("permission".to_owned(), (*permission).to_owned())]),
                );
                Code::PermissionDenied
            }
            Error::Unavailable => {
                info(&mut details, "STORE_UNAVAILABLE", HashMap::new());
                details.set_retry_info(Some(Duration::from_secs(1)));
                Code::Unavailable
            }
            Error::Internal => {
                info(&mut details, "INTERNAL", HashMap::new());
                Code::Internal
            }
        };
        Status::with_error_details(code, message, details)
    }
}
