//! SQL shared by the SQL backends: the table's row, generated from the assignment's
//! one description (its columns, and the conversions to and from the domain), and a
//! [`Filter`] plus a paging cursor turned into a parameterised WHERE clause. Values
//! are always bound, never spliced into the text.

use std::sync::LazyLock;

use sqlx::{Encode, Type, query::QueryAs};

use super::{Cursor, SortKey, SortOrder, StoreError};
use crate::domain::{
    Assignment, AssignmentId, DateTimeOffset, Property,
    filter::{Filter, Op, Value},
    for_each_property,
};

/// [`Row`], its columns and its conversions, from the assignment's one description.
/// A property is one column, except a date-time: its instant in ticks (what filters
/// and sorts compare) and its offset in minutes.
macro_rules! sql_representation {
    ($($variant:ident $name:literal $field:ident $kind:ident [$($column:ident),+] $(offset $offset:ident)?;)*) => {
        sql_representation!(@row [] $($kind [$($column),+])*);

        /// The table's columns, in the order of [`Row`]'s fields.
        const COLUMN_NAMES: &[&str] = &[$($(stringify!($column)),+),*];

        /// The column a filter or sort compares for a property.
        fn column(property: Property) -> &'static str {
            match property {
                $(Property::$variant => sql_representation!(@first $($column),+),)*
            }
        }

        impl Row {
            /// The columns of `a`.
            pub fn of(a: &Assignment) -> Self {
                let mut row = Row::default();
                $(sql_representation!(@set $kind row a.$field, [$($column),+]);)*
                row
            }

            /// The values of the columns, in [`COLUMNS`] order, for rusqlite.
            pub fn params(&self) -> [&dyn rusqlite::ToSql; COLUMN_NAMES.len()] {
                [$($(&self.$column as &dyn rusqlite::ToSql),+),*]
            }

            /// Binds the values of the columns, in [`COLUMNS`] order, to a sqlx query.
            pub fn bind<'q, DB, O>(
                self,
                mut query: QueryAs<'q, DB, O, DB::Arguments<'q>>,
            ) -> QueryAs<'q, DB, O, DB::Arguments<'q>>
            where
                DB: sqlx::Database,
                String: Encode<'q, DB> + Type<DB>,
                Option<String>: Encode<'q, DB> + Type<DB>,
                Option<i64>: Encode<'q, DB> + Type<DB>,
                Option<i32>: Encode<'q, DB> + Type<DB>,
                Option<bool>: Encode<'q, DB> + Type<DB>,
            {
                $($(query = query.bind(self.$column);)+)*
                query
            }

            /// Reads a row's columns by name from rusqlite.
            pub fn read(from: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(Row { $($($column: from.get(stringify!($column))?,)+)* })
            }
        }

        impl TryFrom<Row> for Assignment {
            type Error = StoreError;

            fn try_from(row: Row) -> Result<Self, StoreError> {
                Ok(Assignment {
                    $($field: sql_representation!(@get $kind $name row [$($column),+]),)*
                })
            }
        }
    };
    // The struct, one kind at a time: a macro cannot stand for a field.
    (@row [$($fields:tt)*]) => {
        /// An assignment as stored: one field per column of [`COLUMNS`], in order.
        #[derive(Debug, Default, sqlx::FromRow)]
        pub struct Row { $($fields)* }
    };
    (@row [$($fields:tt)*] key [$c:ident] $($rest:tt)*) => {
        sql_representation!(@row [$($fields)* pub $c: String,] $($rest)*);
    };
    (@row [$($fields:tt)*] text [$c:ident] $($rest:tt)*) => {
        sql_representation!(@row [$($fields)* pub $c: Option<String>,] $($rest)*);
    };
    (@row [$($fields:tt)*] required_text [$c:ident] $($rest:tt)*) => {
        sql_representation!(@row [$($fields)* pub $c: String,] $($rest)*);
    };
    (@row [$($fields:tt)*] bool [$c:ident] $($rest:tt)*) => {
        sql_representation!(@row [$($fields)* pub $c: Option<bool>,] $($rest)*);
    };
    (@row [$($fields:tt)*] date_time [$ticks:ident, $offset:ident] $($rest:tt)*) => {
        sql_representation!(@row [$($fields)* pub $ticks: Option<i64>, pub $offset: Option<i32>,] $($rest)*);
    };
    (@first $first:ident $(, $rest:ident)*) => { stringify!($first) };
    (@set key $row:ident $value:expr, [$c:ident]) => { $row.$c = $value.to_string() };
    (@set text $row:ident $value:expr, [$c:ident]) => { $row.$c = $value.clone() };
    (@set required_text $row:ident $value:expr, [$c:ident]) => { $row.$c = $value.clone() };
    (@set bool $row:ident $value:expr, [$c:ident]) => { $row.$c = $value };
    (@set date_time $row:ident $value:expr, [$ticks:ident, $offset:ident]) => {
        $row.$ticks = $value.as_ref().map(DateTimeOffset::ticks);
        $row.$offset = $value.as_ref().map(DateTimeOffset::offset_minutes);
    };
    (@get key $name:literal $row:ident [$c:ident]) => {
        $row.$c.parse::<AssignmentId>().map_err(|_| corrupt($name))?
    };
    (@get text $name:literal $row:ident [$c:ident]) => { $row.$c };
    (@get required_text $name:literal $row:ident [$c:ident]) => { $row.$c };
    (@get bool $name:literal $row:ident [$c:ident]) => { $row.$c };
    (@get date_time $name:literal $row:ident [$ticks:ident, $offset:ident]) => {
        match ($row.$ticks, $row.$offset) {
            (Some(ticks), Some(offset)) => {
                Some(DateTimeOffset::from_ticks(ticks, offset).map_err(|_| corrupt($name))?)
            }
            _ => None,
        }
    };
}

for_each_property!(sql_representation);

/// The error of a stored value that is not valid (corruption, or a foreign row).
fn corrupt(property: &str) -> StoreError {
    StoreError::Internal(format!("stored {property} is invalid").into())
}

/// The sort expression of expiredDateTime: unset sorts as the smallest value.
pub const EXPIRED_SORT: &str = "COALESCE(expired_ticks, -9223372036854775808)";

/// The columns every query reads, in the order of [`Row`]'s fields.
pub static COLUMNS: LazyLock<String> = LazyLock::new(|| COLUMN_NAMES.join(", "));

/// One row of placeholders for the [`COLUMNS`], the first numbered `first`:
/// `(?, ?, …)` or `($1, $2, …)`.
pub fn row_placeholders(placeholder: fn(usize) -> String, first: usize) -> String {
    let values: Vec<String> = (first..first + COLUMN_NAMES.len())
        .map(placeholder)
        .collect();
    format!("({})", values.join(", "))
}

/// Inserts one row (the [`COLUMNS`], in order) unless a row with its id is stored.
pub fn insert_keeping_existing(placeholder: fn(usize) -> String) -> String {
    format!(
        "INSERT INTO assignments ({}) VALUES {} ON CONFLICT (id) DO NOTHING",
        *COLUMNS,
        row_placeholders(placeholder, 1)
    )
}

/// Reads the [`COLUMNS`] of the row with an id.
pub fn select_by_id(placeholder: fn(usize) -> String) -> String {
    format!(
        "SELECT {} FROM assignments WHERE id = {}",
        *COLUMNS,
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
