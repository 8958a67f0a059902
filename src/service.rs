//! The operations on assignments (create, get, list, delete) over a [`Store`]. Every rule about
//! what a valid assignment is lives here, so gRPC and HTTP callers get the same
//! answers.

use std::sync::Arc;

use prost_types::Timestamp;

use crate::{
    domain::{
        Assignment, AssignmentId, DateTimeError, DateTimeOffset, Error, FieldViolation, InvalidId,
        Property, Selection, check_text, filter, for_each_property, quote,
    },
    paging::{self, PageTokens},
    proto::v1::AccessPackageAssignment,
    storage::{Cursor, Inserted, ListQuery, SortKey, SortOrder, Store, StoreError},
};

/// The page size when the caller names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page size (as Graph's `$top`).
pub const MAX_PAGE_SIZE: u32 = 999;

/// A list request as a caller sent it, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// `None` means [`DEFAULT_PAGE_SIZE`].
    pub page_size: Option<i32>,
    pub page_token: String,
    /// An OData `$filter` expression; empty for none.
    pub filter: String,
    /// Field names (snake_case) to return; empty for all.
    pub select: Vec<String>,
    /// `id` or `expiredDateTime`, optionally followed by `asc` or `desc`.
    pub order_by: String,
    pub include_total_count: bool,
    /// Whose assignments the list is restricted to, on top of `filter`.
    pub scope: Scope,
}

/// Restricts a list or count to the caller's own assignments (Graph's
/// `filterByCurrentUser(on=...)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every assignment the filter matches.
    #[default]
    All,
    /// The assignments whose targetId is the caller: its token's `oid`, `None` when
    /// the token has none.
    TargetIsCaller(Option<String>),
    /// The assignments the caller created (not recorded, so refused).
    CreatedByCaller,
}

/// A count request as a caller sent it, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountRequest {
    /// An OData `$filter` expression; empty for none.
    pub filter: String,
    pub scope: Scope,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Assignment>,
    /// The properties the caller asked for (id always among them).
    pub selection: Selection,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    pub total: Option<u64>,
}

/// A validated list request.
struct ListPlan {
    page_size: u32,
    filter: Option<filter::Filter>,
    order: SortOrder,
    after: Option<Cursor>,
    selection: Selection,
}

impl ListRequest {
    fn validate(&self, tokens: &PageTokens) -> Result<ListPlan, Error> {
        let mut violations = Vec::new();
        let page_size = match self.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE as i32).contains(&n) => n.unsigned_abs(),
            Some(n) => {
                violations.push(FieldViolation::new(
                    "page_size",
                    format!(
                        "the page size ('$top') must be a whole number from 1 to {MAX_PAGE_SIZE}, not {n}"
                    ),
                ));
                DEFAULT_PAGE_SIZE
            }
        };
        let filter = scoped_filter(&self.filter, &self.scope, &mut violations);
        let order = parse_order(&self.order_by).unwrap_or_else(|why| {
            violations.push(FieldViolation::new("order_by", why));
            SortOrder::default()
        });
        let selection = parse_selection(&self.select, &mut violations);
        let after = if self.page_token.is_empty() {
            None
        } else {
            let query = paging::Query {
                filter: &self.filter,
                owner: self.scope.owner(),
                order,
            };
            match tokens.check(&query, &self.page_token) {
                Ok(cursor) => Some(cursor),
                Err(why) => {
                    violations.push(FieldViolation::new(
                        "page_token",
                        format!("the $skiptoken is not valid: {why}"),
                    ));
                    None
                }
            }
        };
        if violations.is_empty() {
            Ok(ListPlan {
                page_size,
                filter,
                order,
                after,
                selection,
            })
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }
}

impl Scope {
    /// The object id the scope restricts the targetId to, if it does.
    fn owner(&self) -> Option<&str> {
        match self {
            Scope::TargetIsCaller(owner) => owner.as_deref(),
            Scope::All | Scope::CreatedByCaller => None,
        }
    }
}

/// The filter a list or count applies: the caller's `$filter`, restricted to the
/// caller's own assignments when the scope says so. Violations are added to
/// `violations`.
fn scoped_filter(
    text: &str,
    scope: &Scope,
    violations: &mut Vec<FieldViolation>,
) -> Option<filter::Filter> {
    let filter = if text.trim().is_empty() {
        None
    } else {
        match filter::parse(text) {
            Ok(f) => Some(f),
            Err(e) => {
                violations.push(FieldViolation::new(
                    "filter",
                    format!("the $filter expression is not supported: {e}"),
                ));
                None
            }
        }
    };
    let owner = match scope {
        Scope::All => return filter,
        Scope::TargetIsCaller(Some(owner)) => owner,
        Scope::TargetIsCaller(None) => {
            violations.push(FieldViolation::new(
                "filter_by_current_user",
                "the access token has no oid claim, so it names no user whose assignments to list (filterByCurrentUser needs a token issued to a user)",
            ));
            return None;
        }
        Scope::CreatedByCaller => {
            violations.push(FieldViolation::new(
                "filter_by_current_user",
                "filterByCurrentUser(on='createdBy') is not supported: who created an assignment is not recorded; use on='target'",
            ));
            return None;
        }
    };
    let own = filter::Filter::Compare(
        Property::TargetId,
        filter::Op::Eq,
        filter::Value::Text(owner.clone()),
    );
    Some(match filter {
        None => own,
        Some(filter) => filter::Filter::And(Box::new(own), Box::new(filter)),
    })
}

/// The properties a selection names (field or Graph names, in any case); empty
/// selects every property. Unknown names are added to `violations`.
fn parse_selection(names: &[String], violations: &mut Vec<FieldViolation>) -> Selection {
    if names.is_empty() {
        return Selection::ALL;
    }
    let mut selection = Selection::id_only();
    for name in names {
        match Property::from_mask_path(name) {
            Some(p) => selection = selection.with(p),
            None => violations.push(FieldViolation::new(
                "select",
                format!(
                    "'{}' is not a property of accessPackageAssignment that can be selected ($select)",
                    quote(name)
                ),
            )),
        }
    }
    selection
}

/// Parses `id` / `expiredDateTime`, optionally followed by `asc` or `desc` (each
/// in any case).
fn parse_order(text: &str) -> Result<SortOrder, String> {
    let mut words = text.split_whitespace();
    // Each sort key has an index of its own (see the migrations): a property is
    // sortable when the store has one for it.
    let key = match words.next() {
        None => return Ok(SortOrder::default()),
        Some(word) => match Property::from_query_name(word) {
            Some(Property::Id) => SortKey::Id,
            Some(Property::ExpiredDateTime) => SortKey::ExpiredDateTime,
            _ => {
                return Err(format!(
                    "the list cannot be ordered by '{}' ($orderby): use id or expiredDateTime",
                    quote(word)
                ));
            }
        },
    };
    let descending = match words.next() {
        None => false,
        Some(asc) if asc.eq_ignore_ascii_case("asc") => false,
        Some(desc) if desc.eq_ignore_ascii_case("desc") => true,
        Some(other) => {
            return Err(format!(
                "'{}' is not a sort direction ($orderby): use asc or desc",
                quote(other)
            ));
        }
    };
    if let Some(extra) = words.next() {
        return Err(format!(
            "'{}' is not understood ($orderby): order by one property, id or expiredDateTime",
            quote(extra)
        ));
    }
    Ok(SortOrder { key, descending })
}

/// Checks each property of an assignment a caller sent, by its kind, and builds
/// the [`Assignment`] when every check passes; generated from the assignment's one
/// description, so a new property is checked by its kind's rules.
macro_rules! domain_from_proto {
    ($($variant:ident $name:literal $field:ident $kind:ident [$($column:ident),+] $(offset $offset:ident)?;)*) => {
        /// The assignment `sent` describes, or every rule it breaks.
        fn validate(sent: AccessPackageAssignment) -> Result<Assignment, Error> {
            let mut violations = Vec::new();
            $(
                let $field = domain_from_proto!(
                    @check $kind, Property::$variant, $name, &mut violations, sent.$field $(, sent.$offset)?
                );
            )*
            match ($($field,)*) {
                ($(Some($field),)*) if violations.is_empty() => Ok(Assignment { $($field,)* }),
                _ => Err(Error::InvalidArgument(violations)),
            }
        }
    };
    (@check key, $p:expr, $name:literal, $out:expr, $value:expr) => { check_key($p, $value, $out) };
    (@check text, $p:expr, $name:literal, $out:expr, $value:expr) => {
        check_text_property($p, $value, false, $out)
    };
    (@check required_text, $p:expr, $name:literal, $out:expr, $value:expr) => {
        check_text_property($p, $value, true, $out).map(Option::unwrap_or_default)
    };
    (@check bool, $p:expr, $name:literal, $out:expr, $value:expr) => { Some($value) };
    (@check date_time, $p:expr, $name:literal, $out:expr, $value:expr, $offset:expr) => {
        // The offset's field is named after its property (gRPC only).
        check_date_time($p, concat!($name, "OffsetMinutes"), $value, $offset, $out)
    };
}

for_each_property!(domain_from_proto);

/// The key: a GUID, or a new time-ordered one when the caller sent none.
fn check_key(
    property: Property,
    sent: Option<String>,
    violations: &mut Vec<FieldViolation>,
) -> Option<AssignmentId> {
    match sent {
        None => Some(AssignmentId::generate()),
        Some(text) => text
            .parse::<AssignmentId>()
            .map_err(|why| violations.push(FieldViolation::new(property.name(), why.to_string())))
            .ok(),
    }
}

/// A string: at most [`MAX_TEXT_CHARS`](crate::domain::MAX_TEXT_CHARS) characters, no
/// NUL; present and non-empty when `required`. `None` when a rule is broken.
fn check_text_property(
    property: Property,
    sent: Option<String>,
    required: bool,
    violations: &mut Vec<FieldViolation>,
) -> Option<Option<String>> {
    let broken = match &sent {
        None if required => Some("it is required".to_owned()),
        Some(v) if required && v.is_empty() => {
            Some("it is required and must not be empty".to_owned())
        }
        Some(v) => check_text(v).err(),
        None => None,
    };
    match broken {
        Some(why) => {
            violations.push(FieldViolation::new(property.name(), why));
            None
        }
        None => Some(sent),
    }
}

/// A date-time: a Timestamp of 100 ns precision within 0001..9999, and an offset
/// (minutes east of UTC) only beside an instant.
fn check_date_time(
    property: Property,
    offset_field: &'static str,
    sent: Option<Timestamp>,
    offset_minutes: Option<i32>,
    violations: &mut Vec<FieldViolation>,
) -> Option<Option<DateTimeOffset>> {
    match (sent, offset_minutes) {
        (None, None) => Some(None),
        (None, Some(_)) => {
            violations.push(FieldViolation::new(
                offset_field,
                format!("it is set but {property} is not"),
            ));
            None
        }
        (Some(instant), offset) => u32::try_from(instant.nanos)
            .map_err(|_| DateTimeError::Impossible)
            .and_then(|nanos| {
                DateTimeOffset::from_parts(instant.seconds, nanos, offset.unwrap_or(0))
            })
            .map_err(|why| violations.push(FieldViolation::new(property.name(), why.to_string())))
            .ok()
            .map(Some),
    }
}

/// The assignment operations, over a store.
#[derive(Clone)]
pub struct AssignmentService {
    store: Arc<dyn Store>,
    page_tokens: PageTokens,
}

impl AssignmentService {
    pub fn new(store: Arc<dyn Store>, page_tokens: PageTokens) -> Self {
        Self { store, page_tokens }
    }

    /// Creates an assignment, idempotently by id: when one with the same id and the
    /// same content exists, it is returned as stored.
    ///
    /// # Errors
    /// `InvalidArgument` for a rule broken, `AlreadyExists` when the id is taken by
    /// different content, `Unavailable`/`Internal` when storage fails.
    #[tracing::instrument(name = "service.create", level = "debug", skip_all, fields(assignment.id))]
    pub async fn create(&self, sent: AccessPackageAssignment) -> Result<Assignment, Error> {
        let assignment = validate(sent)?;
        tracing::Span::current().record("assignment.id", tracing::field::display(assignment.id));
        match self.store.insert(&assignment).await.map_err(store_failed)? {
            Inserted::Created => {
                tracing::debug!("assignment created");
                Ok(assignment)
            }
            Inserted::Existing(stored) if stored == assignment => Ok(stored),
            Inserted::Existing(_) => Err(Error::AlreadyExists(assignment.id)),
        }
    }

    /// Reads one assignment, and the properties the caller selected of it.
    ///
    /// # Errors
    /// `InvalidArgument` when `id` is not a GUID or `select` names an unknown
    /// property, `NotFound` when there is no such assignment,
    /// `Unavailable`/`Internal` when storage fails.
    #[tracing::instrument(name = "service.get", level = "debug", skip_all, fields(assignment.id = id))]
    pub async fn get(&self, id: &str, select: &[String]) -> Result<(Assignment, Selection), Error> {
        let mut violations = Vec::new();
        let parsed = id.parse::<AssignmentId>();
        if let Err(why) = &parsed {
            violations.push(FieldViolation::new(Property::Id.name(), why.to_string()));
        }
        let selection = parse_selection(select, &mut violations);
        let parsed = match parsed {
            Ok(parsed) if violations.is_empty() => parsed,
            _ => return Err(Error::InvalidArgument(violations)),
        };
        let found = self
            .store
            .get(&parsed)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        Ok((found, selection))
    }

    /// How many assignments match a filter (in a scope).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad filter or scope; `Unavailable`/`Internal` when
    /// storage fails.
    #[tracing::instrument(name = "service.count", level = "debug", skip_all)]
    pub async fn count(&self, request: CountRequest) -> Result<u64, Error> {
        let mut violations = Vec::new();
        let filter = scoped_filter(&request.filter, &request.scope, &mut violations);
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        self.store
            .count(filter.as_ref())
            .await
            .map_err(store_failed)
    }

    /// One page of assignments.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad page size, filter, order, selection or page
    /// token; `Unavailable`/`Internal` when storage fails.
    #[tracing::instrument(name = "service.list", level = "debug", skip_all)]
    pub async fn list(&self, request: ListRequest) -> Result<ListResult, Error> {
        let plan = request.validate(&self.page_tokens)?;
        let query = ListQuery {
            filter: plan.filter.as_ref(),
            order: plan.order,
            after: plan.after,
            // One more than a page, to know whether there is a next one.
            limit: plan.page_size + 1,
            count: request.include_total_count,
        };
        let mut page = self.store.list(query).await.map_err(store_failed)?;
        let next_page_token = if page.items.len() > plan.page_size as usize {
            page.items.truncate(plan.page_size as usize);
            page.items.last().map(|last| {
                let query = paging::Query {
                    filter: &request.filter,
                    owner: request.scope.owner(),
                    order: plan.order,
                };
                self.page_tokens.issue(&query, &Cursor::after(last))
            })
        } else {
            None
        };
        Ok(ListResult {
            items: page.items,
            selection: plan.selection,
            next_page_token,
            total: page.total,
        })
    }

    /// Deletes one assignment.
    ///
    /// # Errors
    /// `InvalidArgument` when `id` is not a GUID, `NotFound` when there is no such
    /// assignment, `Unavailable`/`Internal` when storage fails.
    #[tracing::instrument(name = "service.delete", level = "debug", skip_all, fields(assignment.id = id))]
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        let parsed = parse_id(id)?;
        if self.store.delete(&parsed).await.map_err(store_failed)? {
            Ok(())
        } else {
            Err(Error::NotFound(id.to_owned()))
        }
    }
}

fn parse_id(id: &str) -> Result<AssignmentId, Error> {
    id.parse().map_err(|why: InvalidId| {
        Error::InvalidArgument(vec![FieldViolation::new(
            Property::Id.name(),
            why.to_string(),
        )])
    })
}

/// Converts a storage failure at the boundary, logging its cause once, here.
fn store_failed(error: StoreError) -> Error {
    match error {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %error, "store unavailable");
            Error::Unavailable
        }
        StoreError::Internal(_) => {
            tracing::error!(error = %error, "store failed");
            Error::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AccessPackageAssignment {
        AccessPackageAssignment {
            access_package_id: Some("p".into()),
            assignment_policy_id: Some("q".into()),
            target_id: Some("t".into()),
            ..AccessPackageAssignment::default()
        }
    }

    fn violations(sent: AccessPackageAssignment) -> Vec<&'static str> {
        match validate(sent) {
            Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn generates_a_time_ordered_id_when_absent() {
        let a = validate(valid()).unwrap();
        let text = a.id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7");
        assert_eq!(text, text.to_lowercase());
        let later = validate(valid()).unwrap();
        assert!(later.id > a.id, "{} then {}", a.id, later.id);
    }

    #[test]
    fn lists_every_violation() {
        assert_eq!(
            violations(AccessPackageAssignment::default()),
            ["accessPackageId", "assignmentPolicyId", "targetId"]
        );
        let sent = AccessPackageAssignment {
            id: Some("nope".into()),
            catalog_id: Some("x".repeat(1025)),
            target_id: Some(String::new()),
            expired_date_time: Some(Timestamp {
                seconds: 0,
                nanos: 50,
            }),
            ..valid()
        };
        assert_eq!(
            violations(sent),
            ["id", "catalogId", "targetId", "expiredDateTime"]
        );
    }

    #[test]
    fn orders_parse() {
        assert_eq!(parse_order(""), Ok(SortOrder::default()));
        assert_eq!(
            parse_order(" expiredDateTime  desc "),
            Ok(SortOrder {
                key: SortKey::ExpiredDateTime,
                descending: true
            })
        );
        assert_eq!(parse_order("id asc"), Ok(SortOrder::default()));
        assert_eq!(
            parse_order("ExpiredDateTime DESC"),
            Ok(SortOrder {
                key: SortKey::ExpiredDateTime,
                descending: true
            })
        );
        assert_eq!(parse_order("ID Asc"), Ok(SortOrder::default()));
        for bad in [
            "targetId",
            "id up",
            "id asc, expiredDateTime",
            "expired_date_time",
        ] {
            assert!(parse_order(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_offset_needs_an_instant() {
        let sent = AccessPackageAssignment {
            expired_date_time_offset_minutes: Some(60),
            ..valid()
        };
        assert_eq!(violations(sent), ["expiredDateTimeOffsetMinutes"]);
    }
}
