//! The absolute URLs the service writes (`Location`, `@odata.context`,
//! `@odata.nextLink`): where a request's scheme, host and path prefix come from.

use axum::http::{HeaderMap, Uri, header};

use super::Connection;
use crate::config::{PublicUrl, TrustedProxy};

/// How the base of every absolute URL is chosen.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkSettings {
    /// `--public-url`: fixes scheme, host and prefix, whatever the request says.
    public_url: Option<PublicUrl>,
    /// `--trusted-proxy`: peers whose forwarding headers are believed.
    trusted_proxies: Vec<TrustedProxy>,
}

impl LinkSettings {
    pub(crate) fn new(public_url: Option<PublicUrl>, trusted_proxies: Vec<TrustedProxy>) -> Self {
        Self {
            public_url,
            trusted_proxies,
        }
    }

    /// `scheme://host[/prefix]` for URLs answering this request; "" (path-only URLs)
    /// when the request names no valid host.
    pub(crate) fn origin(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        connection: Option<&Connection>,
    ) -> String {
        let _ = &self.trusted_proxies;
        if let Some(public) = &self.public_url {
            return public.base();
        }
        let scheme = if connection.is_some_and(|c| c.tls) {
            "https"
        } else {
            "http"
        };
        match headers.get(header::HOST) {
            Some(host) => host
                .to_str()
                .ok()
                .and_then(|host| host.parse::<axum::http::uri::Authority>().ok()),
            None => uri.authority().cloned(),
        }
        .map(|authority| format!("{scheme}://{authority}"))
        .unwrap_or_default()
    }
}
