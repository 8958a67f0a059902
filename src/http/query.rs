//! The OData query options of a request (`$filter`, `$top`, `$skiptoken`, `$count`,
//! `$select`, `$orderby`), read from the URL the way Graph clients send them, and
//! the `@odata.nextLink` that carries them on to the next page.
//!
//! No option is ever ignored: one that the route does not take, or a parameter that
//! is no option at all, is a 400 that names it. A list-then-delete script whose
//! filter was dropped would otherwise act on every assignment.

use super::ApiError;
use crate::domain::{Property, Selection, quote};

/// How a version prefix spells the system query options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Graph's beta (and the unprefixed and `/localtest` paths, which follow it):
    /// the `$` is optional, so `filter` is `$filter`.
    Beta,
    /// Graph's v1.0, where the `$` is optional only for some APIs: it is required,
    /// and a `$`-less system option is a 400 that says so.
    V1,
}

impl Dialect {
    /// The dialect of a version prefix (`""`, `/beta`, `/v1.0`, `/localtest`).
    pub fn of_prefix(prefix: &str) -> Self {
        if prefix == "/v1.0" {
            Dialect::V1
        } else {
            Dialect::Beta
        }
    }
}

/// The options a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// A collection: every supported option.
    Collection,
    /// A collection's `/$count`: `$filter`.
    Count,
    /// A single entity: `$select`.
    Entity,
    /// None (a create, a delete, the model).
    Nothing,
}

impl Accepts {
    fn options(self) -> &'static [&'static str] {
        match self {
            Accepts::Collection => &SUPPORTED,
            Accepts::Count => &["$filter"],
            Accepts::Entity => &["$select"],
            Accepts::Nothing => &[],
        }
    }

    /// What the URL is, for messages.
    fn target(self) -> &'static str {
        match self {
            Accepts::Collection => "a collection of accessPackageAssignments",
            Accepts::Count => "a count ($count)",
            Accepts::Entity => "a single accessPackageAssignment",
            Accepts::Nothing => "this request",
        }
    }
}

/// The query options of one request, translated for the upstream call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    pub filter: String,
    pub top: Option<i32>,
    pub skiptoken: String,
    pub count: bool,
    /// The names `$select` lists, as sent (the service judges them); empty for all.
    pub select: Vec<String>,
    pub orderby: String,
    /// Every system query option as sent except `$skiptoken`, for the next link.
    carried: Vec<(&'static str, String)>,
}

/// The options this service applies (on a collection).
const SUPPORTED: [&str; 6] = [
    "$filter",
    "$top",
    "$skiptoken",
    "$count",
    "$select",
    "$orderby",
];

/// OData's system query options (and Graph's `$skiptoken`): a `$`-less parameter
/// with one of these names is that option on beta.
const SYSTEM: [&str; 17] = [
    "$filter",
    "$top",
    "$skiptoken",
    "$count",
    "$select",
    "$orderby",
    "$expand",
    "$search",
    "$skip",
    "$format",
    "$levels",
    "$apply",
    "$compute",
    "$deltatoken",
    "$index",
    "$schemaversion",
    "$id",
];

impl QueryOptions {
    /// Reads the options of a route that takes `accepts` from a raw query string.
    ///
    /// # Errors
    /// A 400 naming the parameter that is not an option the route takes, an option
    /// given twice (also once with and once without `$`), or a malformed value.
    pub fn parse(raw: Option<&str>, dialect: Dialect, accepts: Accepts) -> Result<Self, ApiError> {
        let mut options = QueryOptions::default();
        let mut seen: Vec<(&'static str, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let name = system_option(&key, dialect)?;
            let Some(&name) = accepts.options().iter().find(|s| **s == name) else {
                return Err(not_taken(&key, name, accepts));
            };
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let both = if *first == key {
                    String::new()
                } else {
                    format!(" (as '{}' and as '{}')", quote(first), quote(&key))
                };
                return Err(ApiError::bad_request(format!(
                    "The query option '{name}' is specified more than once{both}; it must be specified at most once."
                )));
            }
            seen.push((name, key.into_owned()));
            match name {
                "$filter" => options.filter = value.clone().into_owned(),
                "$orderby" => options.orderby = value.clone().into_owned(),
                "$skiptoken" => options.skiptoken = value.into_owned(),
                "$top" => {
                    let top = value.trim().parse::<i32>().map_err(|_| {
                        ApiError::bad_request(format!(
                            "Invalid value '{}' for the query option '$top': a whole number from 1 to 999 is expected.",
                            quote(&value)
                        ))
                    })?;
                    options.top = Some(top);
                }
                "$count" => {
                    options.count = match value.as_ref() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "Invalid value '{}' for the query option '$count': true or false is expected.",
                                quote(other)
                            )));
                        }
                    }
                }
                "$select" => options.select = parse_select(&value),
                _ => unreachable!("every supported option is handled"),
            }
            if name != "$skiptoken" {
                let carried = value_of(&options, name);
                options.carried.push((name, carried));
            }
        }
        Ok(options)
    }

    /// The properties to write: the `$select`ed ones plus id, or all. Read after the
    /// service accepted the names, so each one is a property.
    pub fn selection(&self) -> Selection {
        if self.select.is_empty() {
            Selection::ALL
        } else {
            self.selected().fold(Selection::id_only(), |s, p| s.with(p))
        }
    }

    /// `$select` as a field mask for the upstream call; `None` for all.
    pub fn select_mask(&self) -> Option<prost_types::FieldMask> {
        (!self.select.is_empty()).then(|| prost_types::FieldMask {
            paths: self.select.clone(),
        })
    }

    /// `$select`'s properties by their canonical names, comma-separated, in
    /// parentheses (as a context URL carries them); "" without `$select`.
    pub fn select_suffix(&self) -> String {
        if self.select.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = self.selected().map(Property::name).collect();
        format!("({})", names.join(","))
    }

    /// The properties `$select` names that the description knows, once each.
    fn selected(&self) -> impl Iterator<Item = Property> + '_ {
        let mut seen = Selection::id_only();
        self.select
            .iter()
            .filter_map(|name| Property::from_mask_path(name))
            .filter(move |p| {
                let new = *p == Property::Id || !seen.contains(*p);
                seen = seen.with(*p);
                new
            })
    }

    /// The URL of the next page: this one's options with the new `$skiptoken`.
    pub fn next_link(&self, base_url: &str, skiptoken: &str) -> String {
        let mut url = format!("{base_url}?");
        for (name, value) in &self.carried {
            url.push_str(name);
            url.push('=');
            url.push_str(&encode(value));
            url.push('&');
        }
        url.push_str("$skiptoken=");
        url.push_str(&encode(skiptoken));
        url
    }
}

/// The system query option a parameter is, `$` included and in lower case.
///
/// # Errors
/// A 400 for a parameter that is no system query option (OData's custom query
/// options: none is supported), or a `$`-less one on v1.0.
fn system_option(key: &str, dialect: Dialect) -> Result<&'static str, ApiError> {
    let (dollar, bare) = match key.strip_prefix('$') {
        Some(bare) => (true, bare),
        None => (false, key),
    };
    let found = SYSTEM
        .iter()
        .find(|option| option[1..].eq_ignore_ascii_case(bare))
        .copied();
    match (found, dollar, dialect) {
        (Some(option), true, _) | (Some(option), false, Dialect::Beta) => Ok(option),
        (Some(option), false, Dialect::V1) => Err(ApiError::bad_request(format!(
            "The query parameter '{}' is not supported on /v1.0: system query options need their '$' there; use '{option}'.",
            quote(key)
        ))),
        (None, true, _) => Err(ApiError::bad_request(format!(
            "The query option '{}' is not supported. Supported options are {}.",
            quote(key),
            SUPPORTED.join(", ")
        ))),
        (None, false, _) => Err(ApiError::bad_request(format!(
            "The query parameter '{}' is not supported: it is no OData system query option, and this service takes no other parameters.",
            quote(key)
        ))),
    }
}

/// The 400 for an option the route does not take.
fn not_taken(key: &str, name: &str, accepts: Accepts) -> ApiError {
    let takes = match accepts.options() {
        [] => "it takes no query options".to_owned(),
        options => format!("it takes {}", options.join(", ")),
    };
    let spelled = if key.eq_ignore_ascii_case(name) {
        String::new()
    } else {
        format!(" (as '{}')", quote(key))
    };
    ApiError::bad_request(format!(
        "The query option '{name}'{spelled} is not supported on {}: {takes}.",
        accepts.target()
    ))
}

/// The value to carry for an option, as it was given.
fn value_of(options: &QueryOptions, name: &str) -> String {
    match name {
        "$filter" => options.filter.clone(),
        "$orderby" => options.orderby.clone(),
        "$top" => options.top.map(|t| t.to_string()).unwrap_or_default(),
        "$count" => options.count.to_string(),
        "$select" => options
            .selected()
            .map(Property::name)
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// The names of a `$select`, trimmed; `*` selects everything (an empty list).
fn parse_select(value: &str) -> Vec<String> {
    let names: Vec<String> = value
        .split(',')
        .map(|name| name.trim().to_owned())
        .collect();
    if names.iter().any(|name| name == "*") {
        Vec::new()
    } else {
        names
    }
}

/// Percent-encodes a query value (`%20` for spaces, as Graph writes it).
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(query: &str) -> Result<QueryOptions, ApiError> {
        QueryOptions::parse(Some(query), Dialect::Beta, Accepts::Collection)
    }

    #[test]
    fn reads_what_graph_sdks_send() {
        let options = list(
            "$filter=accessPackage%2Fid%20eq%20%27p%27&$top=2&$count=true&$select=accessPackageId,TARGETID",
        )
        .unwrap();
        assert_eq!(options.filter, "accessPackage/id eq 'p'");
        assert_eq!(options.top, Some(2));
        assert!(options.count);
        assert_eq!(options.select, ["accessPackageId", "TARGETID"]);
        assert!(options.selection().contains(Property::TargetId));
        assert!(options.selection().contains(Property::Id));
        assert!(!options.selection().contains(Property::CatalogId));
        assert_eq!(options.select_suffix(), "(accessPackageId,targetId)");
        assert_eq!(
            options.next_link("http://h/beta/x", "tok+/="),
            "http://h/beta/x?$filter=accessPackage%2Fid%20eq%20%27p%27&$top=2&$count=true&$select=accessPackageId%2CtargetId&$skiptoken=tok%2B%2F%3D"
        );
        let again = list(&options.next_link("", "t")[1..]).unwrap();
        assert_eq!(again.filter, options.filter);
        assert_eq!(again.skiptoken, "t");
    }

    #[test]
    fn on_beta_the_dollar_is_optional_and_the_next_link_writes_it() {
        let bare = list("filter=targetId%20eq%20%27z%27&Top=1&select=targetId").unwrap();
        let dollar = list("$filter=targetId%20eq%20%27z%27&$top=1&$select=targetId").unwrap();
        assert_eq!(bare, dollar);
        assert!(
            bare.next_link("", "t")
                .starts_with("?$filter=targetId%20eq%20%27z%27&$top=1&$select=targetId&")
        );
        let error = list("filter=a&$filter=b").unwrap_err();
        assert!(
            error
                .message
                .contains("'$filter' is specified more than once (as 'filter' and as '$filter')"),
            "{}",
            error.message
        );
    }

    #[test]
    fn on_v1_a_dollarless_system_option_asks_for_its_dollar() {
        let error =
            QueryOptions::parse(Some("filter=x"), Dialect::V1, Accepts::Collection).unwrap_err();
        assert!(error.message.contains("use '$filter'"), "{}", error.message);
        let options =
            QueryOptions::parse(Some("$FILTER=x"), Dialect::V1, Accepts::Collection).unwrap();
        assert_eq!(options.filter, "x");
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for (query, needle) in [
            ("$expand=x", "'$expand' is not supported"),
            ("expand=x", "'$expand' (as 'expand') is not supported"),
            ("$foo=x", "'$foo' is not supported"),
            ("foo=bar", "'foo' is not supported"),
            ("=bar", "'' is not supported"),
            ("$top=1&$top=2", "more than once"),
            ("$top=ten", "'$top'"),
            ("$count=yes", "'$count'"),
        ] {
            let error = list(query).unwrap_err();
            assert!(error.message.contains(needle), "{query}: {}", error.message);
        }
    }

    #[test]
    fn each_route_takes_its_own_options() {
        let take = |query, accepts| QueryOptions::parse(Some(query), Dialect::Beta, accepts);
        assert_eq!(
            take("$select=TargetId", Accepts::Entity).unwrap().select,
            ["TargetId"]
        );
        assert_eq!(take("filter=x", Accepts::Count).unwrap().filter, "x");
        for (query, accepts, needle) in [
            ("$top=1", Accepts::Entity, "not supported on a single"),
            ("$filter=x", Accepts::Entity, "it takes $select"),
            (
                "$search=x",
                Accepts::Count,
                "'$search' is not supported on a count",
            ),
            ("$select=id", Accepts::Nothing, "it takes no query options"),
            ("foo=bar", Accepts::Nothing, "'foo' is not supported"),
        ] {
            let error = take(query, accepts).unwrap_err();
            assert!(error.message.contains(needle), "{query}: {}", error.message);
        }
        assert_eq!(
            QueryOptions::parse(None, Dialect::V1, Accepts::Nothing).unwrap(),
            QueryOptions::default()
        );
    }
}
