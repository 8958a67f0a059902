//! The storage contract, written once (`cases`) and run against every backend:
//! SQLite in a temporary directory, and PostgreSQL in a database of its own that
//! each test creates and drops.
//!
//! PostgreSQL: `ENTITLEMENT_GATEWAY_TEST_POSTGRES` is the admin URL (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the role needs CREATEDB. When
//! the server cannot be reached the PostgreSQL tests fail, unless
//! `ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1`, when they do not run and each says so on
//! stderr (see `common/postgres.rs`).

use std::{future::Future, sync::Arc};

use entitlement_gateway::storage::{self, Store};

#[path = "common/postgres.rs"]
mod postgres_db;

use postgres_db::{redact, with_database, with_postgres};

/// Runs each case of `stores` (`cases::NAME(Arc<dyn Store>)`) and of `urls`
/// (`cases::NAME(String)`, given the database URL) on every backend.
macro_rules! suite {
    (stores: $($case:ident),* ; urls: $($url_case:ident),* $(,)?) => {
        backend!(sqlite, with_sqlite; $($case),*; $($url_case),*);
        backend!(postgres, with_postgres; $($case),*; $($url_case),*);
    };
}

/// The tests of one backend, whose `$harness` gives each a new database's URL.
macro_rules! backend {
    ($backend:ident, $harness:ident; $($case:ident),*; $($url_case:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::$harness(|url| async move {
                        crate::cases::$case(crate::open(&url).await).await
                    })
                    .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $url_case() {
                    crate::$harness(crate::cases::$url_case).await;
                }
            )*
        }
    };
}

suite! {
    stores:
        round_trip,
        insert_is_idempotent,
        concurrent_duplicate_inserts,
        filters,
        ordering,
        keyset_paging,
        count,
        count_and_page_agree_while_creates_land,
        delete,
        unicode,
        nul_does_not_panic;
    urls:
        concurrent_opens,
}

/// Opens the store at `url` through the entry point the service uses.
async fn open(url: &str) -> Arc<dyn Store> {
    storage::open(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open the store: {e:?}"))
}

/// Runs `case` with the URL of a new SQLite file in a temporary directory.
async fn with_sqlite<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("entitlement.db");
    case(format!("sqlite://{}", path.display())).await;
}

#[test]
fn urls_are_rewritten_and_redacted() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(
        redact("postgres://u:secret@h/test"),
        "postgres://u:***@h/test"
    );
    assert_eq!(redact("postgres://u@h/test"), "postgres://u@h/test");
}

#[tokio::test]
async fn open_names_the_schemes_it_accepts() {
    // An unknown scheme (or none): refused naming both that it takes. And a
    // SQLite URL without a path: refused naming the form it takes.
    for (url, needles) in [
        ("mysql://localhost/db", &["sqlite://", "postgres://"][..]),
        ("/var/lib/db.sqlite", &["sqlite://", "postgres://"]),
        ("", &["sqlite://", "postgres://"]),
        ("ftp://u:secret@h/x", &["sqlite://", "postgres://"]),
        ("sqlite://", &["sqlite://PATH"]),
    ] {
        let Err(error) = storage::open(url).await else {
            panic!("{url:?} was accepted");
        };
        assert!(
            matches!(error, storage::StoreError::Internal(_)),
            "{url:?}: {error:?}"
        );
        for needle in needles {
            assert!(error.to_string().contains(needle), "{url:?}: {error}");
        }
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable() {
    // Nothing listens on port 1: connection refused, at once.
    let error = storage::open("postgres://postgres@127.0.0.1:1/test")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, storage::StoreError::Unavailable(_)),
        "{error:?}"
    );
    let error = storage::open("postgres://[::1").await.err().unwrap();
    assert!(
        matches!(error, storage::StoreError::Internal(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn open_takes_sqlite_urls_with_and_without_slashes() {
    let dir = tempfile::tempdir().unwrap();
    for (url, path) in [
        ("sqlite:", dir.path().join("short.db")),
        ("sqlite://", dir.path().join("long.db")),
    ] {
        let store = storage::open(&format!("{url}{}", path.display()))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        store.ping().await.unwrap();
        assert!(path.exists(), "{url}: the file is where the URL says");
    }
}

/// The contract every backend keeps.
mod cases {
    use std::{collections::HashSet, sync::Arc};

    use entitlement_gateway::{
        domain::{Assignment, AssignmentId, DateTimeOffset, filter},
        storage::{Cursor, Inserted, ListPage, ListQuery, SortKey, SortOrder, Store, StoreError},
    };

    fn id(n: u32) -> AssignmentId {
        format!("00000000-0000-4000-8000-{n:012x}").parse().unwrap()
    }

    fn at(text: &str) -> DateTimeOffset {
        DateTimeOffset::parse(text).unwrap()
    }

    /// An assignment with only the required properties.
    fn minimal(n: u32) -> Assignment {
        Assignment {
            id: id(n),
            catalog_id: None,
            access_package_id: format!("package-{n}"),
            assignment_policy_id: "policy".to_owned(),
            target_id: format!("target-{n}"),
            assignment_status: None,
            assignment_state: None,
            is_extended: None,
            expired_date_time: None,
        }
    }

    fn expiring(n: u32, expired: Option<&str>) -> Assignment {
        Assignment {
            expired_date_time: expired.map(at),
            ..minimal(n)
        }
    }

    async fn insert_all(store: &dyn Store, items: &[Assignment]) {
        for a in items {
            assert_eq!(store.insert(a).await.unwrap(), Inserted::Created, "{a:?}");
        }
    }

    const BY_ID: SortOrder = SortOrder {
        key: SortKey::Id,
        descending: false,
    };

    /// Every order there is.
    fn orders() -> [SortOrder; 4] {
        [
            (SortKey::Id, false),
            (SortKey::Id, true),
            (SortKey::ExpiredDateTime, false),
            (SortKey::ExpiredDateTime, true),
        ]
        .map(|(key, descending)| SortOrder { key, descending })
    }

    async fn page(
        store: &dyn Store,
        filter: Option<&str>,
        order: SortOrder,
        after: Option<Cursor>,
        limit: u32,
    ) -> ListPage {
        let filter = filter.map(|text| filter::parse(text).unwrap());
        store
            .list(ListQuery {
                filter: filter.as_ref(),
                order,
                after,
                limit,
                count: true,
            })
            .await
            .unwrap()
    }

    /// Every assignment the filter matches, in `order`, in one page.
    async fn all(store: &dyn Store, filter: Option<&str>, order: SortOrder) -> Vec<Assignment> {
        page(store, filter, order, None, 1000).await.items
    }

    async fn ids(store: &dyn Store, filter: &str) -> Vec<AssignmentId> {
        all(store, Some(filter), BY_ID)
            .await
            .into_iter()
            .map(|a| a.id)
            .collect()
    }

    pub async fn round_trip(store: Arc<dyn Store>) {
        let full = Assignment {
            id: id(1),
            catalog_id: Some("catalog".to_owned()),
            access_package_id: "package".to_owned(),
            assignment_policy_id: "policy".to_owned(),
            target_id: "target".to_owned(),
            assignment_status: Some("Delivered".to_owned()),
            assignment_state: Some("Delivered".to_owned()),
            is_extended: Some(true),
            expired_date_time: Some(at("2031-07-15T10:20:30.1234567+05:30")),
        };
        let empty_strings = Assignment {
            catalog_id: Some(String::new()),
            assignment_status: Some(String::new()),
            assignment_state: Some(String::new()),
            is_extended: Some(false),
            ..minimal(3)
        };
        let items = [
            full,
            minimal(2),
            empty_strings,
            // The extremes, in both directions of offset.
            expiring(4, Some("0001-01-01T00:00:00-14:00")),
            expiring(5, Some("9999-12-31T23:59:59.9999999Z")),
            expiring(6, Some("0001-01-01T14:00:00+14:00")),
            // Before the epoch, with a fraction: negative ticks.
            expiring(7, Some("1969-12-31T23:59:59.9999999-00:30")),
            expiring(8, Some("1970-01-01T00:00:00Z")),
        ];
        insert_all(&*store, &items).await;
        for a in &items {
            assert_eq!(store.get(&a.id).await.unwrap().as_ref(), Some(a));
        }
        assert_eq!(all(&*store, None, BY_ID).await, items);
        assert_eq!(store.get(&id(99)).await.unwrap(), None);
        store.ping().await.unwrap();
    }

    pub async fn insert_is_idempotent(store: Arc<dyn Store>) {
        let a = expiring(1, Some("2030-01-01T00:00:00+01:00"));
        assert_eq!(store.insert(&a).await.unwrap(), Inserted::Created);
        assert_eq!(
            store.insert(&a).await.unwrap(),
            Inserted::Existing(a.clone())
        );
        // Another assignment with the same id: the stored one is returned, unchanged.
        let other = Assignment {
            target_id: "someone else".to_owned(),
            expired_date_time: None,
            ..a.clone()
        };
        assert_eq!(
            store.insert(&other).await.unwrap(),
            Inserted::Existing(a.clone())
        );
        assert_eq!(store.get(&a.id).await.unwrap(), Some(a));
    }

    pub async fn concurrent_duplicate_inserts(store: Arc<dyn Store>) {
        const TASKS: u32 = 16;
        for round in 0..5 {
            let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                    // Each task's content differs, to tell whose insert won.
                    let a = Assignment {
                        target_id: format!("task-{task}"),
                        ..minimal(round)
                    };
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let outcome = store.insert(&a).await.unwrap();
                        (a, outcome)
                    })
                })
                .collect();
            let mut created = Vec::new();
            let mut existing = Vec::new();
            for task in tasks {
                match task.await.unwrap() {
                    (a, Inserted::Created) => created.push(a),
                    (_, Inserted::Existing(stored)) => existing.push(stored),
                }
            }
            assert_eq!(created.len(), 1, "round {round}: {created:?}");
            let winner = &created[0];
            assert_eq!(existing.len(), TASKS as usize - 1);
            assert!(
                existing.iter().all(|stored| stored == winner),
                "{existing:?}"
            );
            assert_eq!(store.get(&winner.id).await.unwrap().as_ref(), Some(winner));
        }
    }

    pub async fn filters(store: Arc<dyn Store>) {
        let a = |n, catalog: Option<&str>, status: Option<&str>, extended, expired, package| {
            Assignment {
                catalog_id: catalog.map(str::to_owned),
                assignment_status: status.map(str::to_owned),
                assignment_state: status.map(str::to_owned),
                is_extended: extended,
                access_package_id: String::from(package),
                ..expiring(n, expired)
            }
        };
        let mut items = vec![
            a(
                1,
                Some("c1"),
                Some("Delivered"),
                Some(true),
                Some("2030-01-01T00:00:00Z"),
                "p1",
            ),
            // The same instant as 1, written with another offset.
            a(
                2,
                Some("c2"),
                Some("Expired"),
                Some(false),
                Some("2030-01-01T05:30:00+05:30"),
                "p1",
            ),
            a(3, None, None, None, None, "p2"),
            a(
                4,
                Some("c1"),
                Some("Delivered"),
                None,
                Some("2020-06-01T00:00:00-07:00"),
                "p2",
            ),
            a(
                5,
                Some("c2"),
                None,
                Some(true),
                Some("2040-01-01T00:00:00Z"),
                "p3",
            ),
        ];
        items[4].target_id = "it's".to_owned();
        items[0].assignment_policy_id = "q1".to_owned();
        insert_all(&*store, &items).await;

        let cases: &[(&str, &[u32])] = &[
            ("catalogId eq 'c1'", &[1, 4]),
            // OData: null ne 'x' is true.
            ("catalogId ne 'c1'", &[2, 3, 5]),
            ("catalogId eq null", &[3]),
            ("catalogId ne null", &[1, 2, 4, 5]),
            ("assignmentStatus eq 'Delivered'", &[1, 4]),
            ("assignmentStatus ne 'Delivered'", &[2, 3, 5]),
            ("assignmentState eq 'Expired'", &[2]),
            ("assignmentState eq 'expired'", &[]),
            ("accessPackageId eq 'p1'", &[1, 2]),
            ("accessPackage/id ne 'p1'", &[3, 4, 5]),
            ("assignmentPolicyId eq 'q1'", &[1]),
            ("accessPackageAssignmentPolicy/id ne 'q1'", &[2, 3, 4, 5]),
            ("targetId eq 'it''s'", &[5]),
            ("targetId eq ''' or 1=1 --'", &[]),
            ("targetId eq 'target-3'", &[3]),
            ("isExtended eq true", &[1, 5]),
            ("isExtended eq false", &[2]),
            ("isExtended ne true", &[2, 3, 4]),
            ("isExtended ne false", &[1, 3, 4, 5]),
            ("isExtended eq null", &[3, 4]),
            ("isExtended ne null", &[1, 2, 5]),
            // DateTimeOffsets compare as instants, whatever their offsets.
            ("expiredDateTime eq 2030-01-01T00:00:00Z", &[1, 2]),
            ("expiredDateTime eq 2030-01-01T02:00:00+02:00", &[1, 2]),
            ("expiredDateTime ne 2030-01-01T00:00:00Z", &[3, 4, 5]),
            ("expiredDateTime lt 2030-01-01T00:00:00Z", &[4]),
            ("expiredDateTime le 2030-01-01T00:00:00Z", &[1, 2, 4]),
            ("expiredDateTime gt 2030-01-01T00:00:00Z", &[5]),
            ("expiredDateTime ge 2030-01-01T00:00:00Z", &[1, 2, 5]),
            (
                "expiredDateTime gt 2029-12-31T23:59:59.9999999Z",
                &[1, 2, 5],
            ),
            (
                "expiredDateTime lt 2030-01-01T00:00:00.0000001Z",
                &[1, 2, 4],
            ),
            ("expiredDateTime eq null", &[3]),
            ("expiredDateTime ne null", &[1, 2, 4, 5]),
            ("id eq 00000000-0000-4000-8000-000000000003", &[3]),
            (
                "id ne '00000000-0000-4000-8000-000000000003'",
                &[1, 2, 4, 5],
            ),
            ("accessPackageId eq 'p1' and isExtended eq true", &[1]),
            (
                "accessPackageId eq 'p2' or catalogId eq 'c2'",
                &[2, 3, 4, 5],
            ),
            (
                "(catalogId eq 'c1' or catalogId eq null) and assignmentStatus eq 'Delivered'",
                &[1, 4],
            ),
            (
                "catalogId eq 'c1' or catalogId eq null and assignmentStatus eq 'Delivered'",
                &[1, 4],
            ),
            ("isExtended eq true and isExtended eq false", &[]),
        ];
        for (text, expected) in cases {
            let expected: Vec<_> = expected.iter().map(|&n| id(n)).collect();
            assert_eq!(ids(&*store, text).await, expected, "{text}");
        }
    }

    /// Assignments whose expiredDateTime orders in every awkward way: unset (twice),
    /// equal instants with different offsets, before the epoch, the extremes.
    fn to_order() -> Vec<Assignment> {
        let expiries = [
            Some("2030-01-01T00:00:00Z"),
            None,
            Some("2030-01-01T05:30:00+05:30"),
            Some("0001-01-01T00:00:00Z"),
            Some("1969-12-31T23:59:59.9999999Z"),
            None,
            Some("9999-12-31T23:59:59.9999999Z"),
            Some("2030-01-01T00:00:00.0000001Z"),
            Some("2029-12-31T23:59:59.9999999Z"),
            Some("2030-01-01T00:00:00-01:00"),
        ];
        // Ids out of insertion order, digits and letters mixed in their hex.
        [7u32, 0xa, 3, 0xfff, 0x10, 9, 1, 0xab, 0x2b, 0xf0]
            .into_iter()
            .zip(expiries)
            .map(|(n, expired)| expiring(n, expired))
            .collect()
    }

    /// `items` in `order`, as the contract defines it: by id, or by the instant of
    /// expiredDateTime (whatever its offset; unset before every instant) then id;
    /// descending is the exact reverse. (Not with the store's own sort key.)
    fn ordered(mut items: Vec<Assignment>, order: SortOrder) -> Vec<Assignment> {
        items.sort_by_key(|a| match order.key {
            SortKey::Id => (None, a.id),
            SortKey::ExpiredDateTime => (
                Some(a.expired_date_time.map(|d| (d.seconds(), d.nanos()))),
                a.id,
            ),
        });
        if order.descending {
            items.reverse();
        }
        items
    }

    pub async fn ordering(store: Arc<dyn Store>) {
        let items = to_order();
        insert_all(&*store, &items).await;
        // The orders of `to_order`, worked out by hand.
        let by_expiry = [9, 0xa, 0xfff, 0x10, 0x2b, 3, 7, 0xab, 0xf0, 1];
        let by_id = [1, 3, 7, 9, 0xa, 0x10, 0x2b, 0xab, 0xf0, 0xfff];
        for order in orders() {
            let mut expected: Vec<AssignmentId> = match order.key {
                SortKey::Id => by_id.map(id).to_vec(),
                SortKey::ExpiredDateTime => by_expiry.map(id).to_vec(),
            };
            if order.descending {
                expected.reverse();
            }
            let listed: Vec<AssignmentId> = all(&*store, None, order)
                .await
                .into_iter()
                .map(|a| a.id)
                .collect();
            assert_eq!(listed, expected, "{order:?}");
            assert_eq!(
                all(&*store, None, order).await,
                ordered(items.clone(), order),
                "{order:?}"
            );
        }
        // Unset sorts first ascending, last descending.
        let ascending = all(
            &*store,
            None,
            SortOrder {
                key: SortKey::ExpiredDateTime,
                descending: false,
            },
        )
        .await;
        assert!(ascending[..2].iter().all(|a| a.expired_date_time.is_none()));
        assert!(ascending[2..].iter().all(|a| a.expired_date_time.is_some()));
    }

    pub async fn keyset_paging(store: Arc<dyn Store>) {
        let mut items = to_order();
        items.extend((100..113).map(|n| Assignment {
            catalog_id: (n % 3 == 0).then(|| "c0".to_owned()),
            ..expiring(n, (n % 4 != 0).then_some("2030-01-01T00:00:00Z"))
        }));
        insert_all(&*store, &items).await;
        for filter in [None, Some("catalogId ne 'c0'")] {
            for order in orders() {
                let expected = all(&*store, filter, order).await;
                if filter.is_none() {
                    assert_eq!(expected, ordered(items.clone(), order));
                }
                for limit in [1, 2, 5, 7, 50] {
                    let mut walked: Vec<Assignment> = Vec::new();
                    let mut after = None;
                    loop {
                        let page = page(&*store, filter, order, after, limit).await;
                        assert_eq!(page.total, Some(expected.len() as u64));
                        assert!(page.items.len() <= limit as usize);
                        walked.extend(page.items.iter().cloned());
                        match page.items.last() {
                            Some(last) if page.items.len() == limit as usize => {
                                after = Some(Cursor::after(last));
                            }
                            _ => break,
                        }
                    }
                    let distinct: HashSet<_> = walked.iter().map(|a| a.id).collect();
                    assert_eq!(distinct.len(), walked.len(), "a row came twice");
                    assert_eq!(walked, expected, "{filter:?} {order:?} by {limit}");
                }
            }
        }
    }

    pub async fn count(store: Arc<dyn Store>) {
        let empty = page(&*store, None, BY_ID, None, 10).await;
        assert_eq!((empty.items.len(), empty.total), (0, Some(0)));
        let items: Vec<_> = (1..=7)
            .map(|n| Assignment {
                catalog_id: (n % 2 == 0).then(|| "even".to_owned()),
                ..minimal(n)
            })
            .collect();
        insert_all(&*store, &items).await;
        assert_eq!(page(&*store, None, BY_ID, None, 2).await.total, Some(7));
        let even = Some("catalogId eq 'even'");
        assert_eq!(page(&*store, even, BY_ID, None, 1).await.total, Some(3));
        // The count is of the whole filter, not of what is after the cursor.
        let after = Some(Cursor::after(&items[5]));
        let rest = page(&*store, even, BY_ID, after, 1).await;
        assert_eq!(rest.items, [] as [Assignment; 0]);
        assert_eq!(rest.total, Some(3));
        let uncounted = store
            .list(ListQuery {
                filter: None,
                order: BY_ID,
                after: None,
                limit: 3,
                count: false,
            })
            .await
            .unwrap();
        assert_eq!((uncounted.items.len(), uncounted.total), (3, None));

        // The count alone, as `/$count` reads it.
        let parsed = filter::parse("catalogId eq 'even'").unwrap();
        assert_eq!(store.count(Some(&parsed)).await.unwrap(), 3);
        assert_eq!(store.count(None).await.unwrap(), 7);
        let none = filter::parse("catalogId eq 'odd'").unwrap();
        assert_eq!(store.count(Some(&none)).await.unwrap(), 0);
    }

    /// A page that holds every row counts as many rows as it holds, even while
    /// creates are committed between its reads.
    pub async fn count_and_page_agree_while_creates_land(store: Arc<dyn Store>) {
        const CREATES: u32 = 400;
        let creating = tokio::spawn({
            let store = store.clone();
            async move {
                // Four writers, so that creates land all the time.
                let writers = (0..4).map(|w| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for n in (w..CREATES).step_by(4) {
                            store.insert(&minimal(n)).await.unwrap();
                        }
                    })
                });
                for writer in writers.collect::<Vec<_>>() {
                    writer.await.unwrap();
                }
            }
        });
        let mut reads = 0;
        while !creating.is_finished() {
            let listed = page(&*store, None, BY_ID, None, 1000).await;
            assert_eq!(
                listed.total,
                Some(listed.items.len() as u64),
                "read {reads}: the count is not of the rows the page holds"
            );
            reads += 1;
        }
        creating.await.unwrap();
        let listed = page(&*store, None, BY_ID, None, 1000).await;
        assert_eq!((listed.items.len(), listed.total), (400, Some(400)));
        assert!(reads > 0);
    }

    pub async fn delete(store: Arc<dyn Store>) {
        let (a, b) = (minimal(1), minimal(2));
        insert_all(&*store, &[a.clone(), b.clone()]).await;
        assert!(store.delete(&a.id).await.unwrap());
        assert!(!store.delete(&a.id).await.unwrap());
        assert!(!store.delete(&id(99)).await.unwrap());
        assert_eq!(store.get(&a.id).await.unwrap(), None);
        assert_eq!(all(&*store, None, BY_ID).await, [b]);
        // The id is free again.
        assert_eq!(store.insert(&a).await.unwrap(), Inserted::Created);
    }

    pub async fn unicode(store: Arc<dyn Store>) {
        let texts = [
            "🧑‍🚀 astronaut 👩🏽‍💻",
            "\u{200F}שלום\u{200E} and مرحبا",
            "\u{202E}desrever\u{202C}",
            "漢字かなカナ한국어",
            // Precomposed and decomposed é are different strings.
            "caf\u{e9}",
            "cafe\u{301}",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{FEFF}\u{200B}",
            "tab\tnew line\n'quote' \"double\" \\ back",
        ];
        let longest = "😀".repeat(entitlement_gateway::domain::MAX_TEXT_CHARS);
        let items: Vec<_> = texts
            .iter()
            .copied()
            .chain([longest.as_str()])
            .zip(1..)
            .map(|(text, n)| Assignment {
                catalog_id: Some(text.to_owned()),
                target_id: text.to_owned(),
                assignment_state: Some(text.to_owned()),
                ..minimal(n)
            })
            .collect();
        insert_all(&*store, &items).await;
        for a in &items {
            assert_eq!(store.get(&a.id).await.unwrap().as_ref(), Some(a));
            if a.target_id.len() > 1000 {
                continue; // beyond the longest filter
            }
            let quoted = a.target_id.replace('\'', "''");
            let filter = format!("targetId eq '{quoted}' and catalogId eq '{quoted}'");
            assert_eq!(ids(&*store, &filter).await, [a.id], "{:?}", a.target_id);
        }
        assert_eq!(all(&*store, None, BY_ID).await, items);
    }

    pub async fn nul_does_not_panic(store: Arc<dyn Store>) {
        // The service refuses NUL before the store; a store may refuse it too
        // (PostgreSQL text cannot hold it), but must not panic or call it transient.
        let a = Assignment {
            target_id: "a\0b".to_owned(),
            ..minimal(1)
        };
        let inserted = store.insert(&a).await;
        assert!(
            !matches!(inserted, Err(StoreError::Unavailable(_))),
            "{inserted:?}"
        );
        // The parser refuses NUL too; build the filter by hand to reach the store.
        let filter = filter::Filter::Compare(
            entitlement_gateway::domain::Property::TargetId,
            filter::Op::Eq,
            filter::Value::Text("a\0b".to_owned()),
        );
        let listed = store
            .list(ListQuery {
                filter: Some(&filter),
                order: BY_ID,
                after: None,
                limit: 10,
                count: true,
            })
            .await;
        assert!(
            !matches!(listed, Err(StoreError::Unavailable(_))),
            "{listed:?}"
        );
        if inserted.is_ok() {
            assert_eq!(listed.unwrap().items, [a]);
        }
        store.ping().await.unwrap();
        assert_eq!(store.insert(&minimal(2)).await.unwrap(), Inserted::Created);
    }

    /// Several instances starting at once on a new database all open it, and see
    /// the same data.
    pub async fn concurrent_opens(url: String) {
        let opens = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { entitlement_gateway::storage::open(&url).await })
        });
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every instance opens the store"));
        }
        let a = minimal(1);
        assert_eq!(stores[0].insert(&a).await.unwrap(), Inserted::Created);
        for store in &stores {
            assert_eq!(store.get(&a.id).await.unwrap().as_ref(), Some(&a));
        }
    }
}
