//! Per-session settings (`session.configure`) in the SQLite store: saved and loaded with the
//! session's row, and a version 3 database (before them) migrating with none set.

use rusqlite::Connection;

use super::schema::MIGRATIONS;
use super::tests::{at, new_store, session, sid};
use super::{SqliteStore, SCHEMA_VERSION};
use crate::core::persist::{Change, SessionRecord};
use crate::store::Store;

fn configured(n: u128, model: Option<&str>, prompt: Option<&str>) -> Change {
    Change::SessionUpsert(SessionRecord {
        id: sid(n),
        title: format!("s{n}"),
        created_at: at(0),
        updated_at: at(2),
        model: model.map(str::to_owned),
        system_prompt: prompt.map(str::to_owned),
        usage: Default::default(),
    })
}

#[test]
fn settings_are_saved_changed_and_reset_with_the_session() {
    let (_dir, mut store) = new_store();
    store
        .commit(&[configured(1, Some("fast"), Some("Be brief.")), session(2)])
        .unwrap();
    let snap = store.load(10).unwrap();
    let settings = |i: usize| {
        let r = &snap.sessions[i].record;
        (r.model.clone(), r.system_prompt.clone())
    };
    assert_eq!(settings(0), (Some("fast".into()), Some("Be brief.".into())));
    assert_eq!(settings(1), (None, None));
    // An empty prompt (none at all) is not the same as no setting.
    store.commit(&[configured(1, None, Some(""))]).unwrap();
    let snap = store.load(10).unwrap();
    let r = &snap.sessions[0].record;
    assert_eq!(
        (r.model.as_deref(), r.system_prompt.as_deref()),
        (None, Some(""))
    );
}

#[test]
fn a_version_3_database_migrates_with_no_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zcoord.db");
    {
        // A database as a version 3 binary leaves it: the frozen scripts up to 3, and a session.
        let conn = Connection::open(&path).unwrap();
        for script in &MIGRATIONS[..3] {
            conn.execute_batch(script).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, title, created_at, updated_at) VALUES (?1, 'old', 0, 1)",
            [sid(7).to_string()],
        )
        .unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    let version: u32 = store
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!((version, SCHEMA_VERSION), (4, 4));
    let snap = store.load(10).unwrap();
    let r = &snap.sessions[0].record;
    assert_eq!(
        (r.title.as_str(), &r.model, &r.system_prompt),
        ("old", &None, &None)
    );
    // And the migrated row takes settings.
    store.commit(&[configured(7, Some("fast"), None)]).unwrap();
    assert_eq!(
        store.load(10).unwrap().sessions[0].record.model.as_deref(),
        Some("fast")
    );
}
