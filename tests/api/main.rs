//! Black-box tests of the real servers: HTTP and gRPC callers, errors, auth, and the
//! process's lifecycle. One test binary; each test starts its own app.

mod cli;
mod docs;
mod grpc;
mod helpers;
mod hostile;
mod http_create;
mod http_errors;
mod http_list;
mod lifecycle;
mod load;
mod observability;
mod odata;
mod oidc;
mod proxy;
mod roles;
mod tls;
