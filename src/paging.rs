//! Page tokens (`$skiptoken`): where a list walk stopped, bound to the query it
//! belongs to and signed, so a token is opaque to callers and a forged or altered
//! one is refused rather than trusted.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::{
    domain::AssignmentId,
    storage::{Cursor, SortOrder},
};

const VERSION: u8 = 1;
const QUERY_HASH: usize = 16;
const MAC: usize = 16;
/// version, query hash, sort value, id.
const PAYLOAD: usize = 1 + QUERY_HASH + 8 + 16;

/// Signs and checks page tokens with a secret shared by every instance.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

/// A token that is not one this service issued for this query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "it is not a page token of this query: pass the @odata.nextLink (or next_page_token) of the previous page unchanged"
)]
pub struct InvalidPageToken;

impl PageTokens {
    /// Page tokens signed with `key` (derived from the signing key, never the key itself).
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC] {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(payload);
        let mut out = [0u8; MAC];
        out.copy_from_slice(&mac.finalize().into_bytes()[..MAC]);
        out
    }

    /// The token of the page after `cursor`, for the query `(filter, order)`.
    pub fn issue(&self, query: &Query<'_>, cursor: &Cursor) -> String {
        let mut token = Vec::with_capacity(PAYLOAD + MAC);
        token.push(VERSION);
        token.extend_from_slice(&query.hash());
        token.extend_from_slice(&cursor.sort_value.to_be_bytes());
        token.extend_from_slice(cursor.id.as_bytes());
        let mac = self.mac(&token);
        token.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor in `token`, if this service issued it for this very query.
    ///
    /// # Errors
    /// [`InvalidPageToken`] for anything else.
    pub fn check(&self, query: &Query<'_>, token: &str) -> Result<Cursor, InvalidPageToken> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidPageToken)?;
        if bytes.len() != PAYLOAD + MAC || bytes[0] != VERSION {
            return Err(InvalidPageToken);
        }
        let (payload, mac) = bytes.split_at(PAYLOAD);
        let mut verifier =
            <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key size");
        verifier.update(payload);
        // Constant-time comparison of the truncated tag.
        verifier
            .verify_truncated_left(mac)
            .map_err(|_| InvalidPageToken)?;
        if payload[1..1 + QUERY_HASH] != query.hash() {
            return Err(InvalidPageToken);
        }
        let sort_value = i64::from_be_bytes(
            payload[1 + QUERY_HASH..1 + QUERY_HASH + 8]
                .try_into()
                .map_err(|_| InvalidPageToken)?,
        );
        let id = AssignmentId::from_bytes(
            payload[1 + QUERY_HASH + 8..]
                .try_into()
                .map_err(|_| InvalidPageToken)?,
        );
        Ok(Cursor { sort_value, id })
    }
}

/// What a token is bound to: the filter text, whose assignments the list is
/// restricted to, and the order.
pub struct Query<'a> {
    pub filter: &'a str,
    /// The caller a `filterByCurrentUser` list is restricted to: its token does
    /// not continue another caller's walk, nor the unrestricted list.
    pub owner: Option<&'a str>,
    pub order: SortOrder,
}

impl Query<'_> {
    fn hash(&self) -> [u8; QUERY_HASH] {
        let mut hasher = Sha256::new();
        hasher.update(self.filter.as_bytes());
        hasher.update([0, self.order.key as u8, u8::from(self.order.descending)]);
        if let Some(owner) = self.owner {
            hasher.update([1]);
            hasher.update(owner.as_bytes());
        }
        let mut out = [0u8; QUERY_HASH];
        out.copy_from_slice(&hasher.finalize()[..QUERY_HASH]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SortKey;

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let tokens = PageTokens::new([7; 32]);
        let query = Query {
            filter: "targetId eq 'a'",
            owner: None,
            order: SortOrder::default(),
        };
        let cursor = Cursor {
            sort_value: -5,
            id: AssignmentId::generate(),
        };
        let token = tokens.issue(&query, &cursor);
        assert_eq!(tokens.check(&query, &token), Ok(cursor));

        let other_query = Query {
            filter: "targetId eq 'b'",
            owner: None,
            order: SortOrder::default(),
        };
        assert_eq!(tokens.check(&other_query, &token), Err(InvalidPageToken));
        for owner in ["u1", "u2"] {
            let owned = Query {
                owner: Some(owner),
                ..query
            };
            assert_eq!(tokens.check(&owned, &token), Err(InvalidPageToken));
            let owned_token = tokens.issue(&owned, &cursor);
            assert_eq!(tokens.check(&owned, &owned_token), Ok(cursor));
            assert_eq!(tokens.check(&query, &owned_token), Err(InvalidPageToken));
        }
        let other_order = Query {
            filter: query.filter,
            owner: None,
            order: SortOrder {
                key: SortKey::ExpiredDateTime,
                descending: false,
            },
        };
        assert_eq!(tokens.check(&other_order, &token), Err(InvalidPageToken));
        assert_eq!(
            PageTokens::new([8; 32]).check(&query, &token),
            Err(InvalidPageToken)
        );

        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[20] ^= 1;
        assert_eq!(
            tokens.check(&query, &URL_SAFE_NO_PAD.encode(&bytes)),
            Err(InvalidPageToken)
        );
        for garbage in ["", "x", "!!!!", &token[1..]] {
            assert_eq!(
                tokens.check(&query, garbage),
                Err(InvalidPageToken),
                "{garbage}"
            );
        }
    }
}
