//! The OData `$filter` subset this service understands: a lexer and a
//! recursive-descent parser into a typed [`Filter`] tree, with every literal
//! checked against its property's type.
//!
//! ```text
//! filter     = or
//! or         = and *( "or" and )
//! and        = primary *( "and" primary )
//! primary    = "(" or ")" / comparison
//! comparison = property operator literal
//! property   = id / catalogId / accessPackageId / accessPackage/id / assignmentPolicyId
//!            / accessPackageAssignmentPolicy/id / targetId / target/objectId
//!            / assignmentState / assignmentStatus / isExtended / expiredDateTime
//!              (property names in any case, as Graph matches them)
//! operator   = eq / ne / lt / le / gt / ge        (lt..ge on expiredDateTime only)
//! literal    = 'string' ('' inside) / true / false / null / RFC 3339 date-time / GUID
//! ```

use std::fmt;

use super::{AssignmentId, DateTimeOffset, Kind, Property, quote};

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The deepest nesting of parentheses accepted.
const MAX_DEPTH: usize = 16;
/// The most comparisons in one filter.
const MAX_COMPARISONS: usize = 64;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare(Property, Op, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal, already of its property's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Bool(bool),
    DateTime(DateTimeOffset),
}

/// Why a filter was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub message: String,
    /// Byte offset in the filter text.
    pub position: usize,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at position {})", self.message, self.position)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    /// A quoted string, unescaped.
    Quoted(String),
    /// A run of characters up to whitespace or a parenthesis.
    Word(&'a str),
}

impl Token<'_> {
    /// The text of a quoted string or a word.
    fn text(&self) -> Option<&str> {
        match self {
            Token::Quoted(text) => Some(text),
            Token::Word(word) => Some(word),
            Token::Open | Token::Close => None,
        }
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Token<'_>)>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push((start, Token::Open));
            }
            ')' => {
                chars.next();
                tokens.push((start, Token::Close));
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) if chars.peek().is_some_and(|&(_, c)| c == '\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(FilterError {
                                message: "a string literal is not closed with '".into(),
                                position: start,
                            });
                        }
                    }
                }
                tokens.push((start, Token::Quoted(value)));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '\'' {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                tokens.push((start, Token::Word(&text[start..end])));
            }
        }
    }
    Ok(tokens)
}

/// Parses a `$filter` expression.
///
/// # Errors
/// A [`FilterError`] saying what was not understood and where.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(FilterError {
            message: format!("the expression is longer than {MAX_FILTER_BYTES} bytes"),
            position: MAX_FILTER_BYTES,
        });
    }
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        end: text.len(),
        comparisons: 0,
    };
    let filter = parser.or(0)?;
    match parser.tokens.get(parser.next) {
        None => Ok(filter),
        Some((position, token)) => Err(FilterError {
            message: format!(
                "expected 'and', 'or' or the end of the expression, found {}",
                describe(token)
            ),
            position: *position,
        }),
    }
}

struct Parser<'a> {
    tokens: Vec<(usize, Token<'a>)>,
    next: usize,
    end: usize,
    comparisons: usize,
}

fn describe(token: &Token<'_>) -> String {
    match token {
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Quoted(s) => format!("the string '{}'", quote(s)),
        Token::Word(w) => format!("'{}'", quote(w)),
    }
}

/// The navigation paths that stand for a property of the assignment itself: the
/// related entity's key is the property that holds it.
const ALIASES: [(&str, Property); 3] = [
    ("accessPackage/id", Property::AccessPackageId),
    (
        "accessPackageAssignmentPolicy/id",
        Property::AssignmentPolicyId,
    ),
    // The subject's objectId is the assignment's targetId (its `id` is not).
    ("target/objectId", Property::TargetId),
];

/// The property a filter names, by its name or an alias, in any case.
fn property_named(name: &str) -> Option<Property> {
    ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map(|&(_, property)| property)
        .or_else(|| Property::from_query_name(name))
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&(usize, Token<'a>)> {
        self.tokens.get(self.next)
    }

    fn position(&self) -> usize {
        self.peek().map_or(self.end, |(p, _)| *p)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            message: message.into(),
            position: self.position(),
        })
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some((_, Token::Word(w))) if *w == word) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.primary(depth)?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.primary(depth)?));
        }
        Ok(left)
    }

    fn primary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if matches!(self.peek(), Some((_, Token::Open))) {
            if depth >= MAX_DEPTH {
                return self.error(format!("parentheses are nested deeper than {MAX_DEPTH}"));
            }
            self.next += 1;
            let inner = self.or(depth + 1)?;
            if !matches!(self.peek(), Some((_, Token::Close))) {
                return self.error("expected ')'");
            }
            self.next += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return self.error(format!(
                "the expression has more than {MAX_COMPARISONS} comparisons"
            ));
        }
        let name = match self.peek() {
            Some((_, Token::Word(w))) => *w,
            Some((_, token)) => {
                return self.error(format!(
                    "expected a property name, found {}",
                    describe(token)
                ));
            }
            None => return self.error("expected a property name, found the end of the expression"),
        };
        if name == "not" {
            return self.error("the operator 'not' is not supported");
        }
        if matches!(self.tokens.get(self.next + 1), Some((_, Token::Open))) {
            return self.error(format!(
                "the function '{}' is not supported; use eq, ne, lt, le, gt or ge",
                quote(name)
            ));
        }
        let property = match property_named(name) {
            Some(p) => p,
            None => {
                return self.error(format!(
                    "'{}' is not a property of microsoft.graph.accessPackageAssignment that can be filtered on",
                    quote(name)
                ));
            }
        };
        self.next += 1;

        let op = match self.peek() {
            Some((_, Token::Word("eq"))) => Op::Eq,
            Some((_, Token::Word("ne"))) => Op::Ne,
            Some((_, Token::Word("lt"))) => Op::Lt,
            Some((_, Token::Word("le"))) => Op::Le,
            Some((_, Token::Word("gt"))) => Op::Gt,
            Some((_, Token::Word("ge"))) => Op::Ge,
            Some((_, Token::Word(w))) => {
                return self.error(format!(
                    "'{}' is not a supported operator; use eq, ne, lt, le, gt or ge",
                    quote(w)
                ));
            }
            _ => return self.error(format!("expected an operator after '{}'", quote(name))),
        };
        if !matches!(op, Op::Eq | Op::Ne) && !property.kind().ordered() {
            return self.error(format!(
                "'{}' can only be compared with eq or ne",
                quote(name)
            ));
        }
        self.next += 1;

        let Some((_, token)) = self.peek().cloned() else {
            return self.error(format!(
                "expected a value after the operator on '{}'",
                quote(name)
            ));
        };
        let value = self.literal(property, &token)?;
        if value == Value::Null && !matches!(op, Op::Eq | Op::Ne) {
            return self.error("null can only be compared with eq or ne");
        }
        self.next += 1;
        Ok(Filter::Compare(property, op, value))
    }

    fn literal(&self, property: Property, token: &Token<'_>) -> Result<Value, FilterError> {
        let mismatch = || {
            self.error(format!(
                "{} is not a valid value for '{property}' ({})",
                describe(token),
                property.edm_type()
            ))
        };
        if matches!(token, Token::Word("null")) {
            return Ok(Value::Null);
        }
        match (property.kind(), token) {
            (Kind::Key, Token::Quoted(_) | Token::Word(_)) => {
                match token.text().unwrap_or_default().parse::<AssignmentId>() {
                    Ok(id) => Ok(Value::Text(id.to_string())),
                    Err(_) => self.error(format!("{} is not a GUID", describe(token))),
                }
            }
            (Kind::Bool, Token::Word("true")) => Ok(Value::Bool(true)),
            (Kind::Bool, Token::Word("false")) => Ok(Value::Bool(false)),
            (Kind::DateTime, Token::Word(text)) => match DateTimeOffset::parse(text) {
                Ok(value) => Ok(Value::DateTime(value)),
                Err(why) => self.error(format!(
                    "'{}' is not a valid Edm.DateTimeOffset: {why}",
                    quote(text)
                )),
            },
            (Kind::Text | Kind::RequiredText, Token::Quoted(text)) if text.contains('\0') => self
                .error(
                    "a string literal contains the NUL character (U+0000), which no property can hold",
                ),
            (Kind::Text | Kind::RequiredText, Token::Quoted(text)) => Ok(Value::Text(text.clone())),
            (Kind::Key | Kind::Text | Kind::RequiredText | Kind::Bool | Kind::DateTime, _) => {
                mismatch()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compare(property: Property, op: Op, value: Value) -> Filter {
        Filter::Compare(property, op, value)
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            parse("assignmentState eq 'Delivered'").unwrap(),
            compare(
                Property::AssignmentState,
                Op::Eq,
                Value::Text("Delivered".into())
            )
        );
        assert_eq!(
            parse("accessPackage/id eq 'p1'").unwrap(),
            compare(Property::AccessPackageId, Op::Eq, Value::Text("p1".into()))
        );
        assert_eq!(
            parse("accessPackageAssignmentPolicy/id ne 'q'").unwrap(),
            compare(
                Property::AssignmentPolicyId,
                Op::Ne,
                Value::Text("q".into())
            )
        );
    }

    #[test]
    fn names_match_in_any_case_and_target_object_id_is_target_id() {
        let policy = compare(
            Property::AssignmentPolicyId,
            Op::Eq,
            Value::Text("q".into()),
        );
        // Microsoft's entitlement-management tutorial writes `/Id`.
        assert_eq!(
            parse("accessPackageAssignmentPolicy/Id eq 'q'").unwrap(),
            policy
        );
        assert_eq!(parse("ASSIGNMENTPOLICYID eq 'q'").unwrap(), policy);
        let target = compare(Property::TargetId, Op::Eq, Value::Text("u".into()));
        assert_eq!(parse("target/objectId eq 'u'").unwrap(), target);
        assert_eq!(parse("Target/ObjectID eq 'u'").unwrap(), target);
        assert_eq!(parse("TargetId eq 'u'").unwrap(), target);
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        let a = || compare(Property::TargetId, Op::Eq, Value::Text("a".into()));
        let b = || compare(Property::IsExtended, Op::Eq, Value::Bool(true));
        let c = || compare(Property::CatalogId, Op::Eq, Value::Null);
        assert_eq!(
            parse("targetId eq 'a' or isExtended eq true and catalogId eq null").unwrap(),
            Filter::Or(
                Box::new(a()),
                Box::new(Filter::And(Box::new(b()), Box::new(c())))
            )
        );
        assert_eq!(
            parse("(targetId eq 'a' or isExtended eq true) and catalogId eq null").unwrap(),
            Filter::And(
                Box::new(Filter::Or(Box::new(a()), Box::new(b()))),
                Box::new(c())
            )
        );
    }

    #[test]
    fn literals_are_typed() {
        assert_eq!(
            parse("targetId eq 'it''s'").unwrap(),
            compare(Property::TargetId, Op::Eq, Value::Text("it's".into()))
        );
        assert_eq!(
            parse("id eq E4383339-3339-E438-3933-38E4393338E4").unwrap(),
            compare(
                Property::Id,
                Op::Eq,
                Value::Text("e4383339-3339-e438-3933-38e4393338e4".into())
            )
        );
        let date = DateTimeOffset::parse("2030-01-01T00:00:00+02:00").unwrap();
        assert_eq!(
            parse("expiredDateTime lt 2030-01-01T00:00:00+02:00").unwrap(),
            compare(Property::ExpiredDateTime, Op::Lt, Value::DateTime(date))
        );
    }

    #[test]
    fn says_what_it_does_not_understand() {
        let cases = [
            ("", "expected a property name"),
            ("targetId", "expected an operator"),
            ("targetId eq", "expected a value"),
            ("targetId eq 'a", "not closed"),
            ("targetId eq a", "not a valid value"),
            ("targetId eq 1", "not a valid value"),
            ("isExtended eq 'true'", "not a valid value"),
            ("targetId lt 'a'", "only be compared with eq or ne"),
            ("expiredDateTime gt null", "null can only"),
            (
                "expiredDateTime gt 2030-01-01",
                "not a valid Edm.DateTimeOffset",
            ),
            ("id eq 'x'", "not a GUID"),
            ("foo eq 'a'", "'foo' is not a property"),
            ("targetId has 'a'", "not a supported operator"),
            ("startswith(targetId, 'a')", "function 'startswith'"),
            ("not targetId eq 'a'", "'not'"),
            ("targetId eq 'a' and", "expected a property name"),
            (
                "targetId eq 'a' xor targetId eq 'b'",
                "expected 'and', 'or'",
            ),
            ("(targetId eq 'a'", "expected ')'"),
            ("targetId eq 'a')", "expected 'and', 'or'"),
            ("target_id eq 'a'", "not a property"),
            ("target/id eq 'a'", "not a property"),
            ("targetId eq 'a\0b'", "NUL"),
        ];
        for (text, needle) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn is_bounded() {
        let deep = format!("{}targetId eq 'a'{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let wide = vec!["targetId eq 'a'"; 100].join(" or ");
        assert!(parse(&wide).unwrap_err().message.contains("comparisons"));
        assert!(parse(&"x".repeat(MAX_FILTER_BYTES + 1)).is_err());
    }
}
