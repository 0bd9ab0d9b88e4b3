//! What differs between the two databases: connecting, how a write transaction begins, how a
//! market's write lock is taken, migrations, and how a unique violation is recognised.

pub mod sqlite {
    use crate::lite::{Error, Options, Pool, QueryBuilder, Sqlite};

    /// `IMMEDIATE` takes the write lock up front, so two writers never deadlock upgrading a read.
    pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
    pub const FOR_UPDATE: &str = "";
    /// SQLite has one writer: queueing writers in-process is cheaper than busy-waiting on the file.
    pub const SERIALIZE_IN_PROCESS: bool = true;
    pub const MIGRATION_LOCK: Option<&str> = None;
    /// One process writes a SQLite file: its own readers are woken in-process.
    pub const NOTIFY_EVENTS: Option<&str> = None;
    /// Refreshes the planner's statistics (bounded work per index), so lookups by participant
    /// use their indexes instead of scanning a market's whole range as it grows.
    pub const ANALYZE: &str = "PRAGMA analysis_limit = 1000; ANALYZE;";
    pub const MIGRATIONS: &[(i64, &str)] = &[
        (1, include_str!("migrations/0001_schema.sql")),
        (2, include_str!("migrations/0002_append_only_sqlite.sql")),
        (3, include_str!("migrations/0003_lifecycle.sql")),
        (4, include_str!("migrations/0004_webhooks.sql")),
        (5, include_str!("migrations/0005_survey.sql")),
        (6, include_str!("migrations/0006_search_indexes_sqlite.sql")),
        (7, include_str!("migrations/0007_token_revocation.sql")),
        (8, include_str!("migrations/0008_seller_mandates.sql")),
        (9, include_str!("migrations/0009_market_policy.sql")),
        (10, include_str!("migrations/0010_claims.sql")),
        (11, include_str!("migrations/0011_listing_words_sqlite.sql")),
        (12, include_str!("migrations/0012_payments.sql")),
        (13, include_str!("migrations/0013_shipping.sql")),
        (14, include_str!("migrations/0014_by_hand.sql")),
        (15, include_str!("migrations/0015_channels.sql")),
        (16, include_str!("migrations/0016_buyer_funds_index.sql")),
        (17, include_str!("migrations/0017_public_events_index.sql")),
        (18, include_str!("migrations/0018_buyer_funds_sqlite.sql")),
    ];

    /// The migration after which Rust fills listings' `search_doc` (PostgreSQL only: SQLite's
    /// FTS5 index is filled by its migration and kept by triggers).
    pub const FILL_SEARCH_DOCS_AFTER: Option<i64> = None;
    /// The column and value a listing's insert adds for its words (none: FTS5 has its table).
    pub const LISTING_DOC: (&str, &str) = ("", "");
    /// Indexes a listing's words in its transaction: its FTS5 rowid (`search::fts5_rowid`) and
    /// its search text.
    pub const INDEX_WORDS: Option<&str> =
        Some("INSERT INTO listing_words (rowid, search_text) VALUES ($1, $2)");
    /// Notes a listing (market, id) to index at the next flush (a batched store; see
    /// migration 11).
    pub const INDEX_WORDS_LATER: Option<&str> =
        Some("INSERT INTO listing_words_pending (market_id, id) VALUES ($1, $2)");
    /// Indexes the noted listings.
    pub const INDEX_NOTED_WORDS: Option<&str> = Some(
        "INSERT INTO listing_words (rowid, search_text) \
         SELECT l.market_id * 4294967296 + l.id, l.search_text FROM listing_words_pending p \
         JOIN listings l ON l.market_id = p.market_id AND l.id = p.id; \
         DELETE FROM listing_words_pending;",
    );

    /// Opens `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:` (a private in-memory
    /// database: exactly one connection, since each connection would get its own).
    /// `batch` > 1 opens one connection that commits that many transactions at a time (see
    /// [`Pool::connect_batched`]): for a simulation's own database, never for a shared one.
    pub async fn connect(url: &str, batch: usize) -> Result<Pool<Sqlite>, Error> {
        let rest = url.strip_prefix("sqlite:").unwrap_or(url);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        // Query parameters (sqlx accepted e.g. `?mode=rwc`) name what is the default here.
        let path = rest.split('?').next().unwrap_or(rest);
        let memory = path.is_empty() || path == ":memory:" || url.contains("mode=memory");
        let mut pragmas = vec![
            ("journal_mode", if memory { "MEMORY" } else { "WAL" }),
            ("foreign_keys", "ON"),
            ("synchronous", "NORMAL"),
            // Every commit invalidates the other connections' page caches; memory-mapped reads
            // make re-reading a page a memory access instead of a copy through the kernel.
            ("mmap_size", "268435456"),
            ("cache_size", "-16384"),
            ("temp_store", "MEMORY"),
        ];
        if memory {
            pragmas.retain(|(k, _)| *k != "mmap_size");
        }
        if batch <= 1 && !memory {
            // Checkpointed by a thread of its own (`Backend::open`), not in a committing writer.
            pragmas.push(("wal_autocheckpoint", "0"));
        }
        if batch > 1 {
            // A batch rewrites many of the same pages: checkpointing every ~200 MB of WAL
            // instead of every 4 MB writes each page to the database file once per round or so
            // (measured: the commits of a 10,000-participant simulation 14 -> 7 s).
            pragmas.push(("wal_autocheckpoint", "50000"));
            // A batch keeps the pages it dirtied in the page cache until its commit; with the
            // server's 16 MB a simulation's round-long batch spills them to the WAL and rewrites
            // them. 256 MB held a 10,000-participant round, but 128 MB measured as fast there,
            // and 96 MB keeps the run within issue 18's 1 GiB with a margin (128 MB peaked at
            // 1,008-1,040 MiB).
            pragmas.retain(|(k, _)| *k != "cache_size");
            pragmas.push(("cache_size", "-98304"));
            // Its one connection never has its cache invalidated by another, so mapping the
            // file saves no re-read: it only adds the mapped pages to the resident memory.
            pragmas.retain(|(k, _)| *k != "mmap_size");
            // The batched store keeps the file's rows in memory as their only writer: it takes
            // the file exclusively (after WAL is set), so another process cannot write behind
            // its back, nor read pages a batch has not committed yet.
            if !memory {
                pragmas.push(("locking_mode", "EXCLUSIVE"));
            }
        }
        let options = Options {
            path: (!memory).then(|| std::path::PathBuf::from(path)),
            pragmas: pragmas
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            busy_timeout: std::time::Duration::from_secs(30),
        };
        let max = if memory { 1 } else { 8 };
        // Switching a new database file into WAL takes an exclusive lock that the busy timeout
        // does not wait for, so a second process opening the same new file at that moment gets
        // SQLITE_BUSY. Retry for a while: once the file is in WAL mode the pragma takes no lock.
        let mut attempts = 0;
        loop {
            let pool = if batch > 1 {
                Pool::connect_batched(options.clone(), batch)
            } else {
                Pool::connect(options.clone(), max)
            };
            match pool {
                Err(e) if attempts < 100 && e.sqlite_code().is_some_and(|c| c & 0xff == 5) => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 + attempts)).await;
                }
                other => return other,
            }
        }
    }

    /// A batched store holds its file's write lock for a batch at a time and is meant to be the
    /// file's only writer (a simulation's database), so it may keep listings in memory.
    pub const SOLE_WRITER_WHEN_BATCHED: bool = true;
    /// A keyword search sorted by price or id first walks the listings in that order matching
    /// their words (`contains_word`, the batched store's check), and asks FTS5 only when the
    /// page is not among the first rows walked (`Backend::search_by_walking`).
    pub const WALK_BEFORE_WORDS_INDEX: bool = true;

    pub async fn flush(pool: &Pool<Sqlite>) -> Result<(), Error> {
        pool.flush().await
    }

    /// Whether a batched pool rolled back its open batch (`lite::Error::BatchLost`): what the
    /// store keeps in memory then holds rolled-back commands, so it must not answer.
    pub fn batch_lost(pool: &Pool<Sqlite>) -> bool {
        pool.batch_lost()
    }

    /// A server's file is checkpointed on a thread of its own, outside the write lock
    /// ([`Pool::checkpoint_in_background`]; its connections have `wal_autocheckpoint = 0`).
    pub fn checkpoint_in_background(
        pool: &Pool<Sqlite>,
        writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> Result<(), Error> {
        pool.checkpoint_in_background(std::sync::Arc::clone(writer))
    }

    /// A search's words (`row::search_words`, at least one) as SQL: the listing is among the
    /// market's FTS5 matches (migration 11: rowid = market * 2^32 + listing id). A batched
    /// store (`noted`: its new listings are indexed at its flush) matches the text instead,
    /// with `contains_word` (`row::has_word`), as before migration 11.
    pub fn push_words(b: &mut QueryBuilder<Sqlite>, market: i64, words: &[String], noted: bool) {
        if noted {
            for word in words {
                b.push(" AND contains_word(search_text, ")
                    .push_bind(word.clone())
                    .push(")");
            }
            return;
        }
        // A market outside the index's range has no listings (the store refuses to write them).
        let Some(base) = (0..=i64::from(i32::MAX))
            .contains(&market)
            .then_some(market << 32)
        else {
            b.push(" AND 0 = 1");
            return;
        };
        b.push(" AND id IN (SELECT rowid - ")
            .push_bind(base)
            .push(" FROM listing_words WHERE listing_words MATCH ")
            .push_bind(crate::search::fts5_query(words))
            .push(" AND rowid BETWEEN ")
            .push_bind(base)
            .push(" AND ")
            .push_bind(base + i64::from(u32::MAX))
            .push(")");
    }

    /// A listing's relevance to `words` as SQL (`search::relevance`, registered by `lite.rs`).
    pub fn push_score(b: &mut QueryBuilder<Sqlite>, words: &[String]) {
        b.push("listing_score(title, description, ")
            .push_bind(words.join(" "))
            .push(")");
    }

    pub fn is_unique_violation(e: &Error) -> bool {
        // SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY.
        matches!(e.sqlite_code(), Some(2067 | 1555))
    }
}

pub mod postgres {
    use sqlx::postgres::PgPoolOptions;

    pub const BEGIN_WRITE: &str = "BEGIN";
    /// Writers to one market queue on its row; each statement after the lock sees the latest
    /// committed state (READ COMMITTED), across every server process sharing the database.
    pub const FOR_UPDATE: &str = " FOR UPDATE";
    pub const SERIALIZE_IN_PROCESS: bool = false;
    /// Two replicas starting at once must not both migrate.
    pub const MIGRATION_LOCK: Option<&str> = Some("SELECT pg_advisory_xact_lock(72454)");
    /// Announces a market's new events to every replica listening (delivered at commit, and
    /// not at all if the transaction rolls back).
    pub const NOTIFY_EVENTS: Option<&str> = Some("SELECT pg_notify('haggle_events', $1)");
    /// The channel [`NOTIFY_EVENTS`] announces on.
    pub const EVENTS_CHANNEL: &str = "haggle_events";
    pub const ANALYZE: &str = "ANALYZE";
    pub const MIGRATIONS: &[(i64, &str)] = &[
        (1, include_str!("migrations/0001_schema.sql")),
        (2, include_str!("migrations/0002_append_only_postgres.sql")),
        (3, include_str!("migrations/0003_lifecycle.sql")),
        (4, include_str!("migrations/0004_webhooks.sql")),
        (5, include_str!("migrations/0005_survey.sql")),
        (
            6,
            include_str!("migrations/0006_search_indexes_postgres.sql"),
        ),
        (7, include_str!("migrations/0007_token_revocation.sql")),
        (8, include_str!("migrations/0008_seller_mandates.sql")),
        (9, include_str!("migrations/0009_market_policy.sql")),
        (10, include_str!("migrations/0010_claims.sql")),
        (
            11,
            include_str!("migrations/0011_listing_words_postgres.sql"),
        ),
        (12, include_str!("migrations/0012_payments.sql")),
        (13, include_str!("migrations/0013_shipping.sql")),
        (14, include_str!("migrations/0014_by_hand.sql")),
        (15, include_str!("migrations/0015_channels.sql")),
        (16, include_str!("migrations/0016_buyer_funds_index.sql")),
        (17, include_str!("migrations/0017_public_events_index.sql")),
        (18, include_str!("migrations/0018_buyer_funds_postgres.sql")),
    ];

    /// The migration after which Rust fills listings' `search_doc` (`search::tsvector`): the
    /// words are Rust's, so SQL cannot compute them.
    pub const FILL_SEARCH_DOCS_AFTER: Option<i64> = Some(11);
    /// The column and value a listing's insert adds: its `tsvector` (`search::tsvector`).
    pub const LISTING_DOC: (&str, &str) = (", search_doc", ", $19::tsvector");
    /// The words are in the listing's row (`LISTING_DOC`): no other table.
    pub const INDEX_WORDS: Option<&str> = None;
    pub const INDEX_WORDS_LATER: Option<&str> = None;
    pub const INDEX_NOTED_WORDS: Option<&str> = None;

    /// `batch` is ignored: several servers share a PostgreSQL database, so each transaction
    /// commits on its own.
    pub async fn connect(url: &str, _batch: usize) -> Result<sqlx::PgPool, sqlx::Error> {
        use sqlx::Connection;
        let opts: sqlx::postgres::PgConnectOptions = url.parse()?;
        // One plain connection first: an unreachable server or a refused login is reported at
        // once with its cause, instead of as a pool timeout after the acquire timeout's 30 s.
        sqlx::PgConnection::connect_with(&opts)
            .await?
            .close()
            .await?;
        PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_with(opts)
            .await
    }

    /// Replicas share the database: nothing may be kept in memory as if this were its only writer.
    pub const SOLE_WRITER_WHEN_BATCHED: bool = false;
    /// Keyword searches always ask the GIN index (see the SQLite dialect's).
    pub const WALK_BEFORE_WORDS_INDEX: bool = false;

    pub async fn flush(_pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// PostgreSQL commits every command: no batch is ever lost.
    pub fn batch_lost(_pool: &sqlx::PgPool) -> bool {
        false
    }

    /// PostgreSQL checkpoints on its own.
    pub fn checkpoint_in_background(
        _pool: &sqlx::PgPool,
        _writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// A listing search word (one of `row::search_words`) matched against the text (for a word
    /// too long to be a lexeme): the search text with every
    /// separator (each ASCII character but letters and digits, `row::is_word_char`) turned into
    /// a space and padded with spaces, `LIKE '% word %'` (`'% word%'` for a starred prefix). A
    /// word has no `%`, `_` or backslash, so the pattern needs no escapes.
    pub const KEYWORD_MATCH: (&str, &str) = (
        r##" AND (' ' || translate(search_text, ' !"#$%&''()*+,-./:;<=>?@[\]^_`{|}~' || E'\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f', repeat(' ', 65)) || ' ') LIKE "##,
        "",
    );

    pub fn keyword_arg(word: &str) -> String {
        match word.strip_suffix('*') {
            Some(stem) => format!("% {stem}%"),
            None => format!("% {word} %"),
        }
    }

    /// A search's words (`row::search_words`, at least one) as SQL: the listing's `tsvector`
    /// has them all (its GIN index finds the candidates). A word too long to be a lexeme
    /// whole (`search::LEXEME_MAX`) is also matched against the text, as before migration 11.
    pub fn push_words(
        b: &mut sqlx::QueryBuilder<sqlx::Postgres>,
        _market: i64,
        words: &[String],
        _noted: bool,
    ) {
        use crate::search::{Weight, tsquery};
        let queries: Vec<(String, bool)> = words.iter().map(|w| tsquery(w, Weight::Any)).collect();
        let all: Vec<&str> = queries.iter().map(|(q, _)| q.as_str()).collect();
        b.push(" AND search_doc @@ ")
            .push_bind(all.join(" & "))
            .push("::tsquery");
        for (word, (_, cut)) in words.iter().zip(&queries) {
            if *cut {
                b.push(KEYWORD_MATCH.0)
                    .push_bind(keyword_arg(word))
                    .push(KEYWORD_MATCH.1);
            }
        }
    }

    /// A listing's relevance to `words` as SQL, the score `search::relevance` gives: 2 for each
    /// word among the title's lexemes (weight A), 1 among the description's (weight B).
    pub fn push_score(b: &mut sqlx::QueryBuilder<sqlx::Postgres>, words: &[String]) {
        use crate::search::{Weight, tsquery};
        b.push("(0");
        for word in words {
            for (weight, points) in [(Weight::Title, 2), (Weight::Description, 1)] {
                b.push(format!(" + {points} * (search_doc @@ "))
                    .push_bind(tsquery(word, weight).0)
                    .push("::tsquery)::int");
            }
        }
        b.push(")::bigint");
    }

    pub fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
    }
}
