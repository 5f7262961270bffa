//! The two migration folders describe the same schema: both are applied (through
//! `store::connect`, as the server does), read back from each database's catalogue and
//! compared as one line per fact — column type and nullability, primary key, unique
//! constraint, named index. Types are compared by family, since the SQL is written in the
//! common subset (`INTEGER`/`SMALLINT`/`BIGINT` are integers, `BLOB`/`BYTEA` bytes).
//!
//! It needs both databases, so it runs in the PostgreSQL pass; on SQLite alone it says so
//! and passes.

use std::collections::BTreeSet;

use sqlx::{Connection, Row};

use crate::helpers::fresh_database;

/// The family a declared (SQLite) or catalogued (PostgreSQL) type belongs to.
fn family(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "int" | "smallint" | "bigint" => "integer".to_owned(),
        "text" => "text".to_owned(),
        "blob" | "bytea" => "bytes".to_owned(),
        "boolean" => "boolean".to_owned(),
        other => format!("unmapped type {other}"),
    }
}

fn column_fact(table: &str, column: &str, ty: &str, not_null: bool) -> String {
    let null = if not_null { "NOT NULL" } else { "NULL" };
    format!("{table}.{column} {} {null}", family(ty))
}

fn index_fact(name: &str, table: &str, columns: &str, unique: bool, partial: bool) -> String {
    let unique = if unique { "UNIQUE " } else { "" };
    let partial = if partial { " WHERE …" } else { "" };
    format!("{unique}INDEX {name} ON {table} ({columns}){partial}")
}

async fn sqlite_schema(url: &str) -> BTreeSet<String> {
    let mut db = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%'",
    )
    .fetch_all(&mut db)
    .await
    .expect("tables");
    let mut facts = BTreeSet::new();
    for table in &tables {
        let columns = sqlx::query(r#"SELECT name, type, "notnull", pk FROM pragma_table_info($1)"#)
            .bind(table)
            .fetch_all(&mut db)
            .await
            .expect("columns");
        let mut key: Vec<(i64, String)> = Vec::new();
        for c in &columns {
            let name: String = c.get("name");
            let pk: i64 = c.get("pk");
            let not_null: bool = c.get("notnull");
            // PostgreSQL makes key columns NOT NULL; SQLite only enforces it if declared.
            facts.insert(column_fact(table, &name, c.get("type"), not_null || pk > 0));
            if pk > 0 {
                key.push((pk, name));
            }
        }
        key.sort();
        let key: Vec<String> = key.into_iter().map(|(_, name)| name).collect();
        if !key.is_empty() {
            facts.insert(format!("{table} PRIMARY KEY ({})", key.join(", ")));
        }
        let indexes =
            sqlx::query(r#"SELECT name, "unique", origin, partial FROM pragma_index_list($1)"#)
                .bind(table)
                .fetch_all(&mut db)
                .await
                .expect("indexes");
        for i in &indexes {
            let name: String = i.get("name");
            let origin: String = i.get("origin");
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(&mut db)
                    .await
                    .expect("index columns");
            let columns = columns.join(", ");
            match origin.as_str() {
                "pk" => {}
                "u" => {
                    facts.insert(format!("{table} UNIQUE ({columns})"));
                }
                _ => {
                    facts.insert(index_fact(
                        &name,
                        table,
                        &columns,
                        i.get("unique"),
                        i.get("partial"),
                    ));
                }
            }
        }
    }
    facts
}

async fn postgres_schema(url: &str) -> BTreeSet<String> {
    let mut db = sqlx::PgConnection::connect(url).await.expect("postgres");
    let mut facts = BTreeSet::new();
    let columns = sqlx::query(
        "SELECT table_name::TEXT AS table_name, column_name::TEXT AS column_name,
                data_type::TEXT AS data_type, is_nullable = 'NO' AS not_null
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx\\_%'",
    )
    .fetch_all(&mut db)
    .await
    .expect("columns");
    for c in &columns {
        facts.insert(column_fact(
            c.get("table_name"),
            c.get("column_name"),
            c.get("data_type"),
            c.get("not_null"),
        ));
    }
    // Every index with its columns in order, and whether a constraint owns it.
    let indexes = sqlx::query(
        "SELECT i.relname::TEXT AS name, t.relname::TEXT AS table_name,
                ix.indisunique AS is_unique, ix.indisprimary AS is_primary,
                ix.indpred IS NOT NULL AS partial,
                EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)
                    AS is_constraint,
                ARRAY(SELECT a.attname::TEXT
                      FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                      ORDER BY k.ord) AS columns
         FROM pg_index ix
         JOIN pg_class i ON i.oid = ix.indexrelid
         JOIN pg_class t ON t.oid = ix.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = 'public' AND t.relname NOT LIKE '\\_sqlx\\_%'",
    )
    .fetch_all(&mut db)
    .await
    .expect("indexes");
    for i in &indexes {
        let table: String = i.get("table_name");
        let columns: Vec<String> = i.get("columns");
        let columns = columns.join(", ");
        if i.get("is_primary") {
            facts.insert(format!("{table} PRIMARY KEY ({columns})"));
        } else if i.get("is_constraint") {
            facts.insert(format!("{table} UNIQUE ({columns})"));
        } else {
            let name: String = i.get("name");
            facts.insert(index_fact(
                &name,
                &table,
                &columns,
                i.get("is_unique"),
                i.get("partial"),
            ));
        }
    }
    facts
}

#[tokio::test]
async fn the_sqlite_and_postgres_migrations_describe_the_same_schema() {
    let (pg_url, _) = fresh_database().await;
    if !pg_url.starts_with("postgres") {
        eprintln!("schema comparison skipped: it needs PostgreSQL (set RAMPART_TEST_DATABASE_URL)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let lite_url = format!("sqlite://{}", dir.path().join("schema.db").display());
    for url in [&lite_url, &pg_url] {
        rampart::store::connect(url)
            .await
            .expect("migrate")
            .close()
            .await;
    }
    let lite = sqlite_schema(&lite_url).await;
    let pg = postgres_schema(&pg_url).await;
    assert!(lite.len() > 100, "the SQLite schema was read: {lite:#?}");
    let only_lite: Vec<&String> = lite.difference(&pg).collect();
    let only_pg: Vec<&String> = pg.difference(&lite).collect();
    assert!(
        only_lite.is_empty() && only_pg.is_empty(),
        "the migration folders differ\nonly in migrations/sqlite: {only_lite:#?}\nonly in migrations/postgres: {only_pg:#?}"
    );
}
