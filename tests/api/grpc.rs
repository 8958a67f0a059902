//! The gRPC face, with the generated tonic client: create, get, presence, and real
//! statuses with google.rpc details.

use entitlement_gateway::proto::v1::{
    AccessPackageAssignment, CreateAssignmentRequest, GetAssignmentRequest,
};
use prost_types::Timestamp;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, authorized, is_lower_guid};

fn documented() -> AccessPackageAssignment {
    AccessPackageAssignment {
        catalog_id: Some("Catalog Id value".into()),
        access_package_id: Some("Access Package Id value".into()),
        assignment_policy_id: Some("Assignment Policy Id value".into()),
        target_id: Some("Target Id value".into()),
        assignment_status: Some("Assignment Status value".into()),
        assignment_state: Some("Assignment State value".into()),
        is_extended: Some(true),
        // 2017-01-01T00:03:03.9221806+03:00
        expired_date_time: Some(Timestamp {
            seconds: 1_483_218_183,
            nanos: 922_180_600,
        }),
        expired_date_time_offset_minutes: Some(180),
        ..Default::default()
    }
}

fn create(
    assignment: AccessPackageAssignment,
    token: &str,
) -> tonic::Request<CreateAssignmentRequest> {
    authorized(
        CreateAssignmentRequest {
            assignment: Some(assignment),
        },
        token,
    )
}

#[tokio::test]
async fn create_and_get_with_a_typed_client() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc().await;
    let created = client
        .create_assignment(create(documented(), &app.token))
        .await
        .unwrap()
        .into_inner();
    let id = created.id.clone().unwrap();
    assert!(is_lower_guid(&id), "{id}");
    assert_eq!(
        created,
        AccessPackageAssignment {
            id: Some(id.clone()),
            ..documented()
        }
    );
    let read = client
        .get_assignment(authorized(
            GetAssignmentRequest {
                id: id.clone(),
                select: None,
            },
            &app.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, created);

    // What gRPC created, HTTP reads, with the offset it was written with.
    let body: serde_json::Value = app.get_assignment("/beta", &id).await.json().await.unwrap();
    assert_eq!(body["expiredDateTime"], "2017-01-01T00:03:03.9221806+03:00");
}

#[tokio::test]
async fn unset_properties_stay_unset() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc().await;
    let only_required = AccessPackageAssignment {
        access_package_id: Some("p".into()),
        assignment_policy_id: Some("q".into()),
        target_id: Some("t".into()),
        is_extended: Some(false),
        catalog_id: Some(String::new()),
        ..Default::default()
    };
    let created = client
        .create_assignment(create(only_required, &app.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.is_extended,
        Some(false),
        "false is kept, not dropped"
    );
    assert_eq!(
        created.catalog_id.as_deref(),
        Some(""),
        "empty is kept, not null"
    );
    assert_eq!(created.assignment_status, None);
    assert_eq!(created.expired_date_time, None);
    assert_eq!(created.expired_date_time_offset_minutes, None);
}

#[tokio::test]
async fn invalid_arguments_carry_field_violations() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc().await;
    let bad = AccessPackageAssignment {
        id: Some("not-a-guid".into()),
        access_package_id: Some(String::new()),
        expired_date_time: Some(Timestamp {
            seconds: 0,
            nanos: 1,
        }),
        ..documented()
    };
    let status = client
        .create_assignment(create(bad, &app.token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    // In the order of the properties.
    assert_eq!(fields, ["id", "accessPackageId", "expiredDateTime"]);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "INVALID_ARGUMENT"
    );

    let status = client
        .create_assignment(authorized(
            CreateAssignmentRequest { assignment: None },
            &app.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn conflicts_and_missing_ids_are_real_statuses() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc().await;
    let with_id = AccessPackageAssignment {
        id: Some("e4383339-3339-e438-3933-38e4393338e4".into()),
        ..documented()
    };
    let first = client
        .create_assignment(create(with_id.clone(), &app.token))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_assignment(create(with_id.clone(), &app.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    let different = AccessPackageAssignment {
        is_extended: Some(false),
        ..with_id
    };
    let status = client
        .create_assignment(create(different, &app.token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "ASSIGNMENT_ALREADY_EXISTS"
    );

    let status = client
        .get_assignment(authorized(
            GetAssignmentRequest {
                id: "00000000-0000-4000-8000-000000000000".into(),
                select: None,
            },
            &app.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn calls_need_a_token_with_the_permission() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc().await;
    let status = client
        .create_assignment(tonic::Request::new(CreateAssignmentRequest {
            assignment: Some(documented()),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .create_assignment(create(documented(), "garbage"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Access token validation failure.");

    let status = client
        .create_assignment(create(documented(), &app.read_token()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = client
        .get_assignment(authorized(
            GetAssignmentRequest {
                id: "nope".into(),
                select: None,
            },
            &app.mint(&["Other.Scope"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "permission is checked before the request"
    );
}

/// The HTTP front forwards its caller's token as `x-forwarded-authorization`: the
/// service verifies it there just as in `authorization`, and refuses a call that
/// carries both.
#[tokio::test]
async fn a_forwarded_token_is_verified_and_two_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let mut client = app.grpc().await;
    let forwarded = |token: &str| {
        let mut request = tonic::Request::new(CreateAssignmentRequest {
            assignment: Some(documented()),
        });
        request.metadata_mut().insert(
            "x-forwarded-authorization",
            format!("Bearer {token}").parse().unwrap(),
        );
        request
    };

    let created = client
        .create_assignment(forwarded(&app.token))
        .await
        .expect("a forwarded token with the permission")
        .into_inner();
    assert!(is_lower_guid(created.id.as_deref().unwrap()));

    let status = client
        .create_assignment(forwarded("garbage"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Access token validation failure.");
    let status = client
        .create_assignment(forwarded(&app.read_token()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut both = forwarded(&app.token);
    both.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token).parse().unwrap(),
    );
    let status = client.create_assignment(both).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Access token validation failure.");
}

#[tokio::test]
async fn health_needs_no_token_and_reports_serving() {
    let app = TestApp::spawn().await;
    let channel = tonic::transport::Endpoint::from_shared(app.grpc_base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "entitlement.v1.EntitlementManagement"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}

/// Both ports tell each HTTP/2 connection how many requests it may have open at
/// once (SETTINGS_MAX_CONCURRENT_STREAMS; tonic's own default is no limit).
#[tokio::test]
async fn both_ports_bound_the_requests_open_on_one_http2_connection() {
    let app = TestApp::spawn().await;
    for base in [&app.grpc_base, &app.http_base] {
        let tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
        let mut ping = connection.ping_pong().expect("the connection's ping");
        let connection = tokio::spawn(connection);
        // The server's SETTINGS come before its answer to the ping.
        ping.ping(h2::Ping::opaque()).await.unwrap();
        assert_eq!(
            client.current_max_send_streams(),
            entitlement_gateway::MAX_CONCURRENT_STREAMS as usize,
            "{base}"
        );
        drop(client);
        connection.abort();
    }
}

/// A peer that goes silent without closing its HTTP/2 connection (a crashed host, a
/// dropped NAT entry) is pinged, and when it does not answer, disconnected: on both
/// ports. The client here sends the preface and its SETTINGS, then nothing.
#[tokio::test]
async fn both_ports_ping_a_silent_http2_peer_and_close_its_connection() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let app = TestApp::spawn_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| {
        c.keepalive_secs = 1;
    })
    .await;
    let silent_peer = |base: String| async move {
        let mut tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        // Every frame the server sends (type, flags), until it closes the connection.
        let mut frames = Vec::new();
        let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let mut header = [0u8; 9];
            while tcp.read_exact(&mut header).await.is_ok() {
                let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
                let mut payload = vec![0; length as usize];
                if tcp.read_exact(&mut payload).await.is_err() {
                    break;
                }
                frames.push((header[3], header[4]));
            }
        })
        .await;
        (base, closed.is_ok(), frames)
    };
    let (grpc, http) = tokio::join!(
        silent_peer(app.grpc_base.clone()),
        silent_peer(app.http_base.clone())
    );
    for (base, closed, frames) in [grpc, http] {
        const PING: u8 = 6;
        const ACK: u8 = 1;
        assert!(
            frames
                .iter()
                .any(|&(kind, flags)| kind == PING && flags & ACK == 0),
            "{base}: no PING among {frames:?}"
        );
        assert!(closed, "{base}: still open after 30 s; frames {frames:?}");
    }
}
