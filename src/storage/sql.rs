//! SQL shared by the SQL backends: the columns behind each property, and a
//! [`Filter`] plus a paging cursor turned into a parameterised WHERE clause. Values
//! are always bound, never spliced into the text.

use super::{Cursor, SortKey, SortOrder};
use crate::domain::{
    Property,
    filter::{Filter, Op, Value},
};

/// The sort expression of expiredDateTime: unset sorts as the smallest value.
pub const EXPIRED_SORT: &str = "COALESCE(expired_ticks, -9223372036854775808)";

/// The columns every query reads, in the order the backends' rows expect.
pub const COLUMNS: &str = "id, catalog_id, access_package_id, assignment_policy_id, target_id, \
     assignment_status, assignment_state, is_extended, expired_ticks, expired_offset_minutes";

/// One row of placeholders for the [`COLUMNS`], the first numbered `first`:
/// `(?, ?, …)` or `($1, $2, …)`.
pub fn row_placeholders(placeholder: fn(usize) -> String, first: usize) -> String {
    let count = COLUMNS.split(',').count();
    let values: Vec<String> = (first..first + count).map(placeholder).collect();
    format!("({})", values.join(", "))
}

/// Inserts one row (the [`COLUMNS`], in order) unless a row with its id is stored.
pub fn insert_keeping_existing(placeholder: fn(usize) -> String) -> String {
    format!(
        "INSERT INTO assignments ({COLUMNS}) VALUES {} ON CONFLICT (id) DO NOTHING",
        row_placeholders(placeholder, 1)
    )
}

/// Reads the [`COLUMNS`] of the row with an id.
pub fn select_by_id(placeholder: fn(usize) -> String) -> String {
    format!(
        "SELECT {COLUMNS} FROM assignments WHERE id = {}",
        placeholder(1)
    )
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// The statement that counts the assignments `filter` matches, and its binds.
pub fn count(filter: Option<&Filter>, placeholder: fn(usize) -> String) -> (String, Vec<Bind>) {
    let mut all = Where::new(placeholder);
    all.push(filter, None);
    let sql = format!("SELECT COUNT(*) FROM assignments WHERE {}", all.sql);
    (sql, all.binds)
}

/// A WHERE clause under construction. `placeholder(n)` writes the n-th (1-based)
/// placeholder in the backend's syntax (`?` or `$n`).
pub struct Where {
    pub sql: String,
    pub binds: Vec<Bind>,
    placeholder: fn(usize) -> String,
}

impl Where {
    pub fn new(placeholder: fn(usize) -> String) -> Self {
        Self {
            sql: String::new(),
            binds: Vec::new(),
            placeholder,
        }
    }

    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        (self.placeholder)(self.binds.len())
    }

    /// Adds `filter` (when there is one) and the condition "after `cursor`" (when
    /// there is one), joined with AND. Writes `TRUE` when there is neither.
    pub fn push(&mut self, filter: Option<&Filter>, cursor: Option<(&Cursor, SortOrder)>) {
        let mut any = false;
        if let Some(filter) = filter {
            self.filter(filter);
            any = true;
        }
        if let Some((cursor, order)) = cursor {
            if any {
                self.sql.push_str(" AND ");
            }
            let op = if order.descending { "<" } else { ">" };
            // Binds in the order their placeholders appear: `?` is positional.
            match order.key {
                SortKey::Id => {
                    let id = self.bind(Bind::Text(cursor.id.to_string()));
                    self.sql.push_str(&format!("id {op} {id}"));
                }
                SortKey::ExpiredDateTime => {
                    let sort = self.bind(Bind::Int(cursor.sort_value));
                    let id = self.bind(Bind::Text(cursor.id.to_string()));
                    self.sql
                        .push_str(&format!("({EXPIRED_SORT}, id) {op} ({sort}, {id})"));
                }
            }
            any = true;
        }
        if !any {
            self.sql.push_str("TRUE");
        }
    }

    fn filter(&mut self, filter: &Filter) {
        match filter {
            Filter::And(a, b) | Filter::Or(a, b) => {
                let joiner = if matches!(filter, Filter::And(..)) {
                    " AND "
                } else {
                    " OR "
                };
                self.sql.push('(');
                self.filter(a);
                self.sql.push_str(joiner);
                self.filter(b);
                self.sql.push(')');
            }
            Filter::Compare(property, op, value) => {
                let column = column(*property);
                let bound = match value {
                    Value::Null => {
                        let test = if *op == Op::Eq {
                            "IS NULL"
                        } else {
                            "IS NOT NULL"
                        };
                        self.sql.push_str(&format!("{column} {test}"));
                        return;
                    }
                    Value::Text(text) => Bind::Text(text.clone()),
                    Value::Bool(b) => Bind::Bool(*b),
                    Value::DateTime(d) => Bind::Int(d.ticks()),
                };
                let placeholder = self.bind(bound);
                let sql = match op {
                    // OData: null ne 'x' is true.
                    Op::Ne => format!("({column} IS NULL OR {column} <> {placeholder})"),
                    Op::Eq => format!("{column} = {placeholder}"),
                    Op::Lt => format!("{column} < {placeholder}"),
                    Op::Le => format!("{column} <= {placeholder}"),
                    Op::Gt => format!("{column} > {placeholder}"),
                    Op::Ge => format!("{column} >= {placeholder}"),
                };
                self.sql.push_str(&sql);
            }
        }
    }
}

/// ORDER BY for a sort order, id breaking ties in the same direction.
pub fn order_by(order: SortOrder) -> String {
    let direction = if order.descending { "DESC" } else { "ASC" };
    match order.key {
        SortKey::Id => format!("id {direction}"),
        SortKey::ExpiredDateTime => format!("{EXPIRED_SORT} {direction}, id {direction}"),
    }
}

/// The column that holds a property (expiredDateTime: its instant, in ticks).
fn column(property: Property) -> &'static str {
    match property {
        Property::Id => "id",
        Property::CatalogId => "catalog_id",
        Property::AccessPackageId => "access_package_id",
        Property::AssignmentPolicyId => "assignment_policy_id",
        Property::TargetId => "target_id",
        Property::AssignmentStatus => "assignment_status",
        Property::AssignmentState => "assignment_state",
        Property::IsExtended => "is_extended",
        Property::ExpiredDateTime => "expired_ticks",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::filter;

    fn question(_: usize) -> String {
        "?".into()
    }

    fn dollar(n: usize) -> String {
        format!("${n}")
    }

    #[test]
    fn filters_become_bound_sql() {
        let filter =
            filter::parse("targetId ne 'a''b' and (catalogId eq null or isExtended eq true)")
                .unwrap();
        let mut w = Where::new(dollar);
        w.push(Some(&filter), None);
        assert_eq!(
            w.sql,
            "((target_id IS NULL OR target_id <> $1) AND (catalog_id IS NULL OR is_extended = $2))"
        );
        assert_eq!(w.binds, [Bind::Text("a'b".into()), Bind::Bool(true)]);
    }

    #[test]
    fn cursors_continue_after_the_last_key() {
        let id = "e4383339-3339-e438-3933-38e4393338e4".parse().unwrap();
        let cursor = Cursor { sort_value: 7, id };
        let order = SortOrder {
            key: SortKey::ExpiredDateTime,
            descending: true,
        };
        let mut w = Where::new(question);
        w.push(None, Some((&cursor, order)));
        assert_eq!(w.sql, format!("({EXPIRED_SORT}, id) < (?, ?)"));
        assert_eq!(w.binds, [Bind::Int(7), Bind::Text(id.to_string())]);
        let mut w = Where::new(question);
        w.push(None, None);
        assert_eq!(w.sql, "TRUE");
    }
}
