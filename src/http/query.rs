//! The OData query options of a list request (`$filter`, `$top`, `$skiptoken`,
//! `$count`, `$select`, `$orderby`), read from the URL the way Graph clients send
//! them, and the `@odata.nextLink` that carries them on to the next page.

use std::borrow::Cow;

use super::ApiError;
use crate::domain::{Property, Selection};

/// The query options of one list request, translated for the upstream call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub filter: String,
    pub top: Option<i32>,
    pub skiptoken: String,
    pub count: bool,
    /// The properties `$select` names, as Graph names; empty for all.
    pub select: Vec<Property>,
    pub orderby: String,
    /// Every system query option as sent except `$skiptoken`, for the next link.
    carried: Vec<(String, String)>,
}

const SUPPORTED: [&str; 6] = [
    "$filter",
    "$top",
    "$skiptoken",
    "$count",
    "$select",
    "$orderby",
];

impl ListOptions {
    /// Reads the options from a raw query string.
    ///
    /// # Errors
    /// A 400 naming the option that is unsupported, repeated or malformed.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut options = ListOptions::default();
        let mut seen = Vec::new();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            // Options without `$` are custom query options, which OData ignores.
            if !key.starts_with('$') {
                continue;
            }
            let name = key.to_ascii_lowercase();
            let Some(&name) = SUPPORTED.iter().find(|s| **s == name) else {
                return Err(ApiError::bad_request(format!(
                    "The query option '{}' is not supported. Supported options are {}.",
                    quote(&key),
                    SUPPORTED.join(", ")
                )));
            };
            if seen.contains(&name) {
                return Err(ApiError::bad_request(format!(
                    "The query option '{name}' is specified more than once; it must be specified at most once."
                )));
            }
            seen.push(name);
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
                "$select" => options.select = parse_select(&value)?,
                _ => unreachable!("every supported option is handled"),
            }
            if name != "$skiptoken" {
                options
                    .carried
                    .push((name.to_owned(), value_of(&options, name)));
            }
        }
        Ok(options)
    }

    /// The properties to write: the `$select`ed ones plus id, or all.
    pub fn selection(&self) -> Selection {
        if self.select.is_empty() {
            Selection::ALL
        } else {
            self.select
                .iter()
                .fold(Selection::id_only(), |s, p| s.with(*p))
        }
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

/// The value to carry for an option, as it was given.
fn value_of(options: &ListOptions, name: &str) -> String {
    match name {
        "$filter" => options.filter.clone(),
        "$orderby" => options.orderby.clone(),
        "$top" => options.top.map(|t| t.to_string()).unwrap_or_default(),
        "$count" => options.count.to_string(),
        "$select" => options
            .select
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

fn parse_select(value: &str) -> Result<Vec<Property>, ApiError> {
    let mut properties = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name == "*" {
            return Ok(Vec::new());
        }
        match Property::from_name(name) {
            Some(p) if !properties.contains(&p) => properties.push(p),
            Some(_) => {}
            None => {
                return Err(ApiError::bad_request(format!(
                    "Could not find a property named '{}' on type 'microsoft.graph.accessPackageAssignment' ($select).",
                    quote(name)
                )));
            }
        }
    }
    Ok(properties)
}

/// Percent-encodes a query value (`%20` for spaces, as Graph writes it).
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A caller's text, shortened for a message.
fn quote(text: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_graph_sdks_send() {
        let options = ListOptions::parse(Some(
            "$filter=accessPackage%2Fid%20eq%20%27p%27&$top=2&$count=true&$select=accessPackageId,targetId&custom=1",
        ))
        .unwrap();
        assert_eq!(options.filter, "accessPackage/id eq 'p'");
        assert_eq!(options.top, Some(2));
        assert!(options.count);
        assert_eq!(
            options.select,
            [Property::AccessPackageId, Property::TargetId]
        );
        assert!(options.selection().contains(Property::Id));
        assert!(!options.selection().contains(Property::CatalogId));
        assert_eq!(
            options.next_link("http://h/beta/x", "tok+/="),
            "http://h/beta/x?$filter=accessPackage%2Fid%20eq%20%27p%27&$top=2&$count=true&$select=accessPackageId%2CtargetId&$skiptoken=tok%2B%2F%3D"
        );
        let again = ListOptions::parse(Some(&options.next_link("", "t")[1..])).unwrap();
        assert_eq!(again.filter, options.filter);
        assert_eq!(again.skiptoken, "t");
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for (query, needle) in [
            ("$expand=x", "'$expand' is not supported"),
            ("$top=1&$top=2", "more than once"),
            ("$top=ten", "'$top'"),
            ("$count=yes", "'$count'"),
            ("$select=foo", "'foo'"),
        ] {
            let error = ListOptions::parse(Some(query)).unwrap_err();
            assert!(error.message.contains(needle), "{query}: {}", error.message);
        }
    }
}
