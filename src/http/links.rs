//! The absolute URLs the service writes (`Location`, `@odata.context`,
//! `@odata.nextLink`): where a request's scheme, host and path prefix come from.
//!
//! In order: `--public-url`, whatever the request says; otherwise, from a peer in
//! `--trusted-proxy`, the first element of `Forwarded` (RFC 7239), or failing that
//! `X-Forwarded-Proto` / `X-Forwarded-Host`; otherwise the connection's own scheme
//! (https on native TLS) and the request's `Host` (or HTTP/2 `:authority`). A
//! forwarded value that is not a usable scheme or host is ignored, as all of them
//! are from any other peer: a client cannot choose the host links point to.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, Uri, header, uri::Authority};

use super::Connection;
use crate::config::{PublicUrl, TrustedProxy};

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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

    /// `--public-url`, when it is set.
    pub(crate) fn public_url(&self) -> Option<&PublicUrl> {
        self.public_url.as_ref()
    }

    /// `scheme://host[/prefix]` for URLs answering this request; "" (path-only URLs)
    /// when the request names no valid host.
    pub(crate) fn origin(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        connection: Option<&Connection>,
    ) -> String {
        if let Some(public) = &self.public_url {
            return public.base();
        }
        let forwarded = match connection {
            Some(connection) if self.trusts(connection.peer.ip()) => Forwarded::read(headers),
            _ => Forwarded::default(),
        };
        let scheme = forwarded
            .proto
            .unwrap_or(if connection.is_some_and(|c| c.tls) {
                "https"
            } else {
                "http"
            });
        forwarded
            .host
            .or_else(|| match headers.get(header::HOST) {
                Some(host) => host.to_str().ok().and_then(valid_host),
                None => uri.authority().and_then(|a| valid_host(a.as_str())),
            })
            .map(|authority| format!("{scheme}://{authority}"))
            .unwrap_or_default()
    }

    /// Whether `peer` is one of the trusted proxies. An IPv4 peer seen on an IPv6
    /// socket (`::ffff:a.b.c.d`) is matched as the IPv4 address it is too.
    fn trusts(&self, peer: IpAddr) -> bool {
        let canonical = peer.to_canonical();
        self.trusted_proxies
            .iter()
            .any(|proxy| proxy.contains(peer) || proxy.contains(canonical))
    }
}

/// What a trusted proxy says of the client's request; `None` where it says nothing
/// usable.
#[derive(Debug, Default, PartialEq, Eq)]
struct Forwarded {
    /// `http` or `https`.
    proto: Option<&'static str>,
    /// `host[:port]`.
    host: Option<Authority>,
}

impl Forwarded {
    /// Each of proto and host from the first element of the first `Forwarded`
    /// header when it has a valid one, otherwise from the first item of
    /// `X-Forwarded-Proto` / `X-Forwarded-Host`.
    fn read(headers: &HeaderMap) -> Self {
        let element = headers
            .get(header::FORWARDED)
            .and_then(|value| value.to_str().ok())
            .and_then(first_forwarded_element)
            .unwrap_or_default();
        let first_item = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .map(str::trim)
        };
        Self {
            proto: parameter(&element, "proto")
                .and_then(valid_proto)
                .or_else(|| first_item(&X_FORWARDED_PROTO).and_then(valid_proto)),
            host: parameter(&element, "host")
                .and_then(valid_host)
                .or_else(|| first_item(&X_FORWARDED_HOST).and_then(valid_host)),
        }
    }
}

/// The value of the parameter `name` (in lower case) of a forwarded-element; `None`
/// when it is absent, or present more than once (which RFC 7239 forbids: which
/// one would be meant is unknown).
fn parameter<'a>(element: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = element.iter().filter(|(n, _)| n == name);
    match (found.next(), found.next()) {
        (Some((_, value)), None) => Some(value),
        _ => None,
    }
}

/// A scheme links may have: `http` or `https`, in any case, written in lower case.
fn valid_proto(proto: &str) -> Option<&'static str> {
    if proto.eq_ignore_ascii_case("https") {
        Some("https")
    } else if proto.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// `host[:port]` as a URL's authority: no user information, a host, and a port (if
/// any) that is a port number.
fn valid_host(text: &str) -> Option<Authority> {
    let authority: Authority = text.parse().ok()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    match &authority.as_str()[authority.host().len()..] {
        "" => Some(authority),
        port => port
            .strip_prefix(':')
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u16>().ok())
            .map(|_| authority),
    }
}

/// The parameters (names in lower case, values unquoted) of the first
/// forwarded-element of a `Forwarded` header value: the one the first proxy added,
/// describing the client's own request. `None` when that element is malformed.
///
/// RFC 7239: `forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )`,
/// `forwarded-pair = token "=" value`, `value = token / quoted-string`; elements
/// are comma-separated. Whitespace around the separators is tolerated, and so is an
/// unquoted value with characters a token cannot hold (`host=example.com:8080`, as
/// proxies often write it): the value is checked for what it is used as anyway.
fn first_forwarded_element(value: &str) -> Option<Vec<(String, String)>> {
    const SPACE: [char; 2] = [' ', '\t'];
    let mut pairs = Vec::new();
    // A list may start with empty elements, which do not count.
    let mut rest = value.trim_start_matches(|c| c == ',' || SPACE.contains(&c));
    loop {
        rest = rest.trim_start_matches(SPACE);
        match rest.chars().next() {
            None | Some(',') => return Some(pairs),
            // An empty pair.
            Some(';') => {
                rest = &rest[1..];
                continue;
            }
            Some(_) => {}
        }
        let name_end = rest.find(|c| !is_tchar(c)).unwrap_or(rest.len());
        if name_end == 0 {
            return None;
        }
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..]
            .trim_start_matches(SPACE)
            .strip_prefix('=')?
            .trim_start_matches(SPACE);
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut unquoted = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i + 1,
                    (_, '\\') => unquoted.push(chars.next()?.1),
                    (_, c) => unquoted.push(c),
                }
            };
            rest = &quoted[end..];
            unquoted
        } else {
            let end = rest.find([';', ',', '"', ' ', '\t']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            let value = rest[..end].to_owned();
            rest = &rest[end..];
            value
        };
        pairs.push((name, value));
        rest = rest.trim_start_matches(SPACE);
        match rest.chars().next() {
            None | Some(',') => return Some(pairs),
            Some(';') => rest = &rest[1..],
            Some(_) => return None,
        }
    }
}

/// Whether `c` may be in an HTTP token (RFC 9110 `tchar`).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::http::HeaderValue;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn peer(addr: &str, tls: bool) -> Connection {
        Connection {
            peer: addr.parse::<SocketAddr>().unwrap(),
            tls,
        }
    }

    fn settings(public_url: Option<&str>, trusted: &[&str]) -> LinkSettings {
        LinkSettings::new(
            public_url.map(|url| url.parse().unwrap()),
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
        )
    }

    fn read(list: &[(&str, &str)]) -> (Option<&'static str>, Option<String>) {
        let forwarded = Forwarded::read(&headers(list));
        (forwarded.proto, forwarded.host.map(|h| h.to_string()))
    }

    #[test]
    fn the_first_element_is_parsed_with_its_names_in_lower_case() {
        assert_eq!(
            first_forwarded_element(
                "for=192.0.2.60;Proto=https;HOST=api.example.com;by=203.0.113.43"
            ),
            Some(pairs(&[
                ("for", "192.0.2.60"),
                ("proto", "https"),
                ("host", "api.example.com"),
                ("by", "203.0.113.43"),
            ]))
        );
        // Only the first element: the one the first proxy added.
        assert_eq!(
            first_forwarded_element(
                "proto=https;host=first.example, proto=http;host=second.example"
            ),
            Some(pairs(&[("proto", "https"), ("host", "first.example")]))
        );
        assert_eq!(
            first_forwarded_element(" , ,for=a , for=b"),
            Some(pairs(&[("for", "a")]))
        );
        assert_eq!(first_forwarded_element(""), Some(Vec::new()));
        // Empty pairs, and whitespace around the separators, are tolerated.
        assert_eq!(
            first_forwarded_element(";proto=https ;; host = a.example ;"),
            Some(pairs(&[("proto", "https"), ("host", "a.example")]))
        );
    }

    #[test]
    fn quoted_values_are_unquoted_and_unescaped() {
        assert_eq!(
            first_forwarded_element(r#"for="[2001:db8:cafe::17]:4711";host="a.example:8443""#),
            Some(pairs(&[
                ("for", "[2001:db8:cafe::17]:4711"),
                ("host", "a.example:8443"),
            ]))
        );
        assert_eq!(
            first_forwarded_element(r#"host="a\.exa\"mple, b;c", proto=http"#),
            Some(pairs(&[("host", "a.exa\"mple, b;c")]))
        );
        // A comma or semicolon inside quotes ends nothing.
        assert_eq!(
            first_forwarded_element(r#"for="x,y;z";proto=https,host=other"#),
            Some(pairs(&[("for", "x,y;z"), ("proto", "https")]))
        );
        // An unquoted value with a colon, as proxies write hosts.
        assert_eq!(
            first_forwarded_element("host=a.example:8080"),
            Some(pairs(&[("host", "a.example:8080")]))
        );
    }

    #[test]
    fn a_malformed_element_is_refused() {
        for malformed in [
            r#"host="unterminated"#,
            r#"host="a\"#,
            "host",
            "host=",
            "=a.example",
            "proto=https;host",
            r#"host="a"b"#,
            "host=a b",
            "pro to=https",
            "(proto)=https",
        ] {
            assert_eq!(first_forwarded_element(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn forwarded_comes_first_then_the_x_forwarded_headers() {
        assert_eq!(
            read(&[
                ("forwarded", "for=1.2.3.4;proto=https;host=f.example"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "x.example"),
            ]),
            (Some("https"), Some("f.example".to_owned()))
        );
        assert_eq!(
            read(&[
                ("x-forwarded-proto", "https, http"),
                ("x-forwarded-host", "x.example:8443, other.example"),
            ]),
            (Some("https"), Some("x.example:8443".to_owned()))
        );
        // Each one from Forwarded when it has it, else from X-Forwarded-*.
        assert_eq!(
            read(&[
                ("forwarded", "for=1.2.3.4;proto=https"),
                ("x-forwarded-host", "x.example"),
            ]),
            (Some("https"), Some("x.example".to_owned()))
        );
        // The first header line is the first proxy's.
        assert_eq!(
            read(&[
                ("forwarded", "proto=https;host=first.example"),
                ("forwarded", "proto=http;host=second.example"),
            ]),
            (Some("https"), Some("first.example".to_owned()))
        );
        assert_eq!(read(&[]), (None, None));
    }

    #[test]
    fn proto_is_http_or_https_in_any_case() {
        for (given, wanted) in [
            ("https", Some("https")),
            ("HTTPS", Some("https")),
            ("Http", Some("http")),
            ("ftp", None),
            ("https:", None),
            ("", None),
            ("javascript", None),
        ] {
            assert_eq!(valid_proto(given), wanted, "{given}");
            assert_eq!(
                read(&[("forwarded", &format!("proto=\"{given}\""))]).0,
                wanted,
                "{given}"
            );
            assert_eq!(read(&[("x-forwarded-proto", given)]).0, wanted, "{given}");
        }
    }

    #[test]
    fn a_host_must_be_an_authority_without_user_information() {
        for good in [
            "api.example.com",
            "api.example.com:8443",
            "127.0.0.1:3000",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
        ] {
            assert_eq!(
                valid_host(good).map(|a| a.to_string()).as_deref(),
                Some(good)
            );
            assert_eq!(read(&[("x-forwarded-host", good)]).1.as_deref(), Some(good));
        }
        for bad in [
            "",
            "user@evil.example",
            "user:pw@evil.example",
            "evil.example/path",
            "evil.example?x",
            "evil.example#x",
            "a b",
            "a.example:port",
            "a.example:99999",
            "a.example:",
            ":443",
            "[2001:db8::1",
            "http://a.example",
        ] {
            assert!(valid_host(bad).is_none(), "{bad}");
            assert_eq!(
                read(&[("forwarded", &format!("host=\"{bad}\""))]).1,
                None,
                "{bad}"
            );
            assert_eq!(read(&[("x-forwarded-host", bad)]).1, None, "{bad}");
        }
    }

    #[test]
    fn a_bad_or_repeated_forwarded_value_is_ignored_not_an_error() {
        // A bad proto falls back to X-Forwarded-Proto (or the connection's own).
        assert_eq!(
            read(&[
                ("forwarded", "proto=gopher;host=f.example"),
                ("x-forwarded-proto", "https"),
            ]),
            (Some("https"), Some("f.example".to_owned()))
        );
        assert_eq!(
            read(&[("forwarded", "proto=gopher;host=\"u@f.example\"")]),
            (None, None)
        );
        // A malformed element: as if there were none.
        assert_eq!(
            read(&[
                ("forwarded", "proto=https;host=\"f.example"),
                ("x-forwarded-host", "x.example"),
            ]),
            (None, Some("x.example".to_owned()))
        );
        // A parameter given twice means nothing.
        assert_eq!(
            read(&[("forwarded", "host=a.example;host=b.example;proto=https")]),
            (Some("https"), None)
        );
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_peer() {
        let uri: Uri = "/beta/x".parse().unwrap();
        let sent = headers(&[
            ("host", "127.0.0.1:8080"),
            ("forwarded", "proto=https;host=api.example.com"),
        ]);
        let trusting = settings(None, &["10.0.0.0/8", "192.0.2.1"]);
        let origin = |settings: &LinkSettings, connection: Option<Connection>| {
            settings.origin(&uri, &sent, connection.as_ref())
        };
        assert_eq!(
            origin(&trusting, Some(peer("10.1.2.3:5000", false))),
            "https://api.example.com"
        );
        assert_eq!(
            origin(&trusting, Some(peer("192.0.2.1:5000", false))),
            "https://api.example.com"
        );
        // An IPv4 proxy seen on an IPv6 socket.
        assert_eq!(
            origin(&trusting, Some(peer("[::ffff:10.1.2.3]:5000", false))),
            "https://api.example.com"
        );
        for untrusted in [
            Some(peer("192.0.2.2:5000", false)),
            Some(peer("[2001:db8::1]:5000", false)),
            None,
        ] {
            assert_eq!(origin(&trusting, untrusted), "http://127.0.0.1:8080");
        }
        assert_eq!(
            origin(&settings(None, &[]), Some(peer("10.1.2.3:5000", false))),
            "http://127.0.0.1:8080"
        );
        // Native TLS makes links https by itself; a trusted proxy may still say http.
        assert_eq!(
            origin(&settings(None, &[]), Some(peer("10.1.2.3:5000", true))),
            "https://127.0.0.1:8080"
        );
        let plain = headers(&[("host", "h.example"), ("x-forwarded-proto", "http")]);
        assert_eq!(
            trusting.origin(&uri, &plain, Some(&peer("10.0.0.1:1", true))),
            "http://h.example"
        );
        // A bad forwarded value falls back to the connection's scheme and Host.
        let bad = headers(&[
            ("host", "h.example"),
            ("forwarded", "proto=ftp;host=\"u@evil.example\""),
        ]);
        assert_eq!(
            trusting.origin(&uri, &bad, Some(&peer("10.0.0.1:1", true))),
            "https://h.example"
        );
    }

    #[test]
    fn a_public_url_wins_over_everything() {
        let uri: Uri = "http://authority.example/beta/x".parse().unwrap();
        let sent = headers(&[
            ("host", "h.example"),
            ("forwarded", "proto=http;host=api.example.com"),
            ("x-forwarded-host", "x.example"),
        ]);
        let settings = settings(
            Some("https://public.example.com/entitlement/"),
            &["0.0.0.0/0"],
        );
        assert_eq!(
            settings.origin(&uri, &sent, Some(&peer("10.0.0.1:1", false))),
            "https://public.example.com/entitlement"
        );
        assert_eq!(
            settings.origin(&uri, &HeaderMap::new(), None),
            "https://public.example.com/entitlement"
        );
    }

    #[test]
    fn without_a_host_header_the_uri_authority_is_used() {
        let settings = settings(None, &[]);
        let absolute: Uri = "http://h2.example:8443/beta/x".parse().unwrap();
        assert_eq!(
            settings.origin(&absolute, &HeaderMap::new(), None),
            "http://h2.example:8443"
        );
        let relative: Uri = "/beta/x".parse().unwrap();
        assert_eq!(settings.origin(&relative, &HeaderMap::new(), None), "");
        let bad = headers(&[("host", "user@h.example")]);
        assert_eq!(settings.origin(&relative, &bad, None), "");
    }
}
