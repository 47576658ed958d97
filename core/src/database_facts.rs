//! Database facts: who owns what, which grants exist, which extensions and large objects,
//! recorded in the manifest at backup time and compared after a restore.
//!
//! Row counts say the data came back; these say the database works as before for its
//! tenant: a restore runs as the tenant's role (`pg_restore --no-owner --role`), so every
//! object must come back owned by that role, and every grant the backup recorded must be
//! there again, with the roles that owned objects in the original read as the restored
//! owner. Objects that belong to an extension are the extension's business, compared
//! through the extension's name and version only.
//!
//! Objects are named `<kind> <identity>` as `pg_identify_object` gives them, e.g.
//! `table public.orders`, `function public.total(integer)`, `large object 16401`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What [`DatabaseFacts::capture`] reads from one database.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseFacts {
    /// Object (`table public.orders`) → its owner. Tables, views, materialized views,
    /// sequences, foreign tables, schemas, functions and user-defined types (domains,
    /// enums, ranges, free-standing composites); nothing of the system or an extension.
    pub owners: BTreeMap<String, String>,
    /// (object, grantee or `PUBLIC`, privilege), the privilege followed by `WITH GRANT
    /// OPTION` when it has one; the defaults spelt out where an ACL is null.
    pub grants: BTreeSet<(String, String, String)>,
    /// Extension → version.
    pub extensions: BTreeMap<String, String>,
    /// Owner → how many large objects it owns.
    pub large_object_owners: BTreeMap<String, u64>,
}

/// Every object of interest with its owner and its ACL (defaults spelt out). System
/// schemas are `pg_*` and `information_schema`.
const OBJECTS: &str = "\
WITH objects AS (
    SELECT 'pg_class'::regclass AS classid, c.oid AS objid, c.relowner AS owner,
           coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner)) AS acl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relpersistence <> 't'
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  UNION ALL
    SELECT 'pg_namespace'::regclass, n.oid, n.nspowner, coalesce(n.nspacl, acldefault('n', n.nspowner))
    FROM pg_namespace n
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  UNION ALL
    SELECT 'pg_proc'::regclass, p.oid, p.proowner, coalesce(p.proacl, acldefault('f', p.proowner))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  UNION ALL
    SELECT 'pg_type'::regclass, t.oid, t.typowner, coalesce(t.typacl, acldefault('T', t.typowner))
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND (t.typtype IN ('d', 'e', 'r')
           OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
  UNION ALL
    SELECT 'pg_largeobject'::regclass, l.oid, l.lomowner, coalesce(l.lomacl, acldefault('L', l.lomowner))
    FROM pg_largeobject_metadata l
)
SELECT (pg_identify_object(o.classid, o.objid, 0)).type || ' ' || (pg_identify_object(o.classid, o.objid, 0)).identity,
       pg_get_userbyid(o.owner),
       o.classid = 'pg_largeobject'::regclass,
       o.acl::text[]
FROM objects o
WHERE NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e')";

/// The grants of the ACLs given as text, each exploded by the server.
const EXPLODE_ACL: &str = "\
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
       a.privilege_type, a.is_grantable
FROM aclexplode($1::text[]::aclitem[]) a";

const EXTENSIONS: &str = "SELECT extname, extversion FROM pg_extension";

/// The pseudo-role that stands for the database's owner.
const DATABASE_OWNER_ROLE: &str = "pg_database_owner";

impl DatabaseFacts {
    /// Read the facts of the database `client` is connected to, in its current
    /// transaction (the backup's REPEATABLE READ snapshot).
    pub async fn capture(
        client: &tokio_postgres::Client,
    ) -> Result<DatabaseFacts, tokio_postgres::Error> {
        let mut facts = DatabaseFacts::default();
        let explode = client.prepare(EXPLODE_ACL).await?;
        for row in client.query(OBJECTS, &[]).await? {
            let object: String = row.get(0);
            let owner: String = row.get(1);
            let is_large_object: bool = row.get(2);
            let acl: Vec<String> = row.get(3);
            for grant in client.query(&explode, &[&acl]).await? {
                let grantee: String = grant.get(0);
                let privilege: String = grant.get(1);
                let grantable: bool = grant.get(2);
                let privilege = if grantable {
                    format!("{privilege} WITH GRANT OPTION")
                } else {
                    privilege
                };
                facts.grants.insert((object.clone(), grantee, privilege));
            }
            if is_large_object {
                *facts.large_object_owners.entry(owner).or_default() += 1;
            } else {
                facts.owners.insert(object, owner);
            }
        }
        for row in client.query(EXTENSIONS, &[]).await? {
            facts.extensions.insert(row.get(0), row.get(1));
        }
        Ok(facts)
    }

    /// How `restored` (a restore of the database these facts describe, run as
    /// `restored_owner`) differs from them, one readable line per difference; empty when
    /// it is as it should be.
    pub fn differences_after_restore(
        &self,
        restored: &DatabaseFacts,
        restored_owner: &str,
    ) -> Vec<String> {
        let original_owners: BTreeSet<&str> = self
            .owners
            .values()
            .chain(self.large_object_owners.keys())
            .map(String::as_str)
            .collect();
        let as_restored = |role: &str| -> String {
            if original_owners.contains(role) {
                restored_owner.to_owned()
            } else {
                role.to_owned()
            }
        };
        let mut differences = Vec::new();

        for object in self.owners.keys() {
            if !restored.owners.contains_key(object) {
                differences.push(format!("{object}: missing"));
            }
        }
        for (object, owner) in &restored.owners {
            // `pg_database_owner` (PostgreSQL 14+, the owner of schema `public` in a new
            // database) is whoever owns the database, and the restored database is owned
            // by `restored_owner`: a dump restored with `--no-owner` leaves it so.
            let owner = if owner == DATABASE_OWNER_ROLE {
                restored_owner
            } else {
                owner.as_str()
            };
            if !self.owners.contains_key(object) {
                differences.push(format!("{object}: not in the backup"));
            } else if owner != restored_owner {
                differences.push(format!(
                    "{object}: owned by {owner}, should be {restored_owner}"
                ));
            }
        }

        let expected_grants: BTreeSet<(String, String, String)> = self
            .grants
            .iter()
            .map(|(object, grantee, privilege)| {
                (object.clone(), as_restored(grantee), privilege.clone())
            })
            .collect();
        // What an object's owner holds on it follows the owner: a wrong owner is reported
        // once, above, not again as each of its privileges.
        let restored_grants: BTreeSet<(String, String, String)> = restored
            .grants
            .iter()
            .map(|(object, grantee, privilege)| {
                let grantee = if restored.owners.get(object) == Some(grantee)
                    || grantee == DATABASE_OWNER_ROLE
                {
                    restored_owner.to_owned()
                } else {
                    grantee.clone()
                };
                (object.clone(), grantee, privilege.clone())
            })
            .collect();
        for (object, grantee, privilege) in expected_grants.difference(&restored_grants) {
            // A missing object is reported once, not once per grant.
            if restored.owners.contains_key(object) || object.starts_with("large object ") {
                differences.push(format!("{object}: {privilege} to {grantee} missing"));
            }
        }
        for (object, grantee, privilege) in restored_grants.difference(&expected_grants) {
            if self.owners.contains_key(object) || object.starts_with("large object ") {
                differences.push(format!(
                    "{object}: {privilege} to {grantee} not in the backup"
                ));
            }
        }

        for (extension, version) in &self.extensions {
            match restored.extensions.get(extension) {
                Some(restored_version) if restored_version == version => {}
                Some(restored_version) => differences.push(format!(
                    "extension {extension}: version {restored_version}, backup has {version}"
                )),
                None => differences.push(format!("extension {extension}: missing")),
            }
        }
        for extension in restored.extensions.keys() {
            if !self.extensions.contains_key(extension) {
                differences.push(format!("extension {extension}: not in the backup"));
            }
        }

        let mut expected_large_objects: BTreeMap<String, u64> = BTreeMap::new();
        for (owner, count) in &self.large_object_owners {
            *expected_large_objects
                .entry(as_restored(owner))
                .or_default() += count;
        }
        if expected_large_objects != restored.large_object_owners {
            differences.push(format!(
                "large objects by owner: {}, backup has {}",
                describe_counts(&restored.large_object_owners),
                describe_counts(&expected_large_objects)
            ));
        }
        differences
    }
}

fn describe_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(owner, count)| format!("{count} of {owner}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(object: &str, grantee: &str, privilege: &str) -> (String, String, String) {
        (object.to_owned(), grantee.to_owned(), privilege.to_owned())
    }

    /// A backup of acme's database: a table owned by acme with a grant to PUBLIC and one
    /// to a reporting role, a schema, an extension, two large objects.
    fn original() -> DatabaseFacts {
        DatabaseFacts {
            owners: BTreeMap::from([
                ("table public.orders".to_owned(), "acme".to_owned()),
                ("schema public".to_owned(), "acme".to_owned()),
            ]),
            grants: BTreeSet::from([
                grant("table public.orders", "acme", "SELECT"),
                grant("table public.orders", "PUBLIC", "SELECT"),
                grant("table public.orders", "reporting", "SELECT"),
                grant("schema public", "acme", "USAGE"),
            ]),
            extensions: BTreeMap::from([("citext".to_owned(), "1.6".to_owned())]),
            large_object_owners: BTreeMap::from([("acme".to_owned(), 2)]),
        }
    }

    /// The same, restored as `copy`.
    fn restored_as_copy() -> DatabaseFacts {
        DatabaseFacts {
            owners: BTreeMap::from([
                ("table public.orders".to_owned(), "copy".to_owned()),
                ("schema public".to_owned(), "copy".to_owned()),
            ]),
            grants: BTreeSet::from([
                grant("table public.orders", "copy", "SELECT"),
                grant("table public.orders", "PUBLIC", "SELECT"),
                grant("table public.orders", "reporting", "SELECT"),
                grant("schema public", "copy", "USAGE"),
            ]),
            extensions: BTreeMap::from([("citext".to_owned(), "1.6".to_owned())]),
            large_object_owners: BTreeMap::from([("copy".to_owned(), 2)]),
        }
    }

    #[test]
    fn a_faithful_restore_under_another_owner_has_no_differences() {
        assert_eq!(
            original().differences_after_restore(&restored_as_copy(), "copy"),
            Vec::<String>::new()
        );
        assert_eq!(
            original().differences_after_restore(&original(), "acme"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_difference_is_one_line_naming_the_object() {
        let mut restored = restored_as_copy();
        // A new owner takes the old owner's privileges with it, as ALTER … OWNER does.
        restored
            .owners
            .insert("table public.orders".to_owned(), "intruder".to_owned());
        restored
            .grants
            .remove(&grant("table public.orders", "copy", "SELECT"));
        restored
            .grants
            .insert(grant("table public.orders", "intruder", "SELECT"));
        restored
            .grants
            .remove(&grant("table public.orders", "PUBLIC", "SELECT"));
        restored
            .owners
            .insert("view public.extra".to_owned(), "copy".to_owned());
        restored.owners.remove("schema public");
        restored
            .extensions
            .insert("citext".to_owned(), "1.5".to_owned());
        restored.large_object_owners = BTreeMap::from([("copy".to_owned(), 1)]);
        assert_eq!(
            original().differences_after_restore(&restored, "copy"),
            [
                "schema public: missing",
                "table public.orders: owned by intruder, should be copy",
                "view public.extra: not in the backup",
                "table public.orders: SELECT to PUBLIC missing",
                "extension citext: version 1.5, backup has 1.6",
                "large objects by owner: 1 of copy, backup has 2 of copy",
            ]
        );
    }

    #[test]
    fn a_grant_to_the_original_owner_left_behind_is_reported() {
        let mut restored = restored_as_copy();
        restored
            .grants
            .insert(grant("table public.orders", "acme", "SELECT"));
        assert_eq!(
            original().differences_after_restore(&restored, "copy"),
            ["table public.orders: SELECT to acme not in the backup"]
        );
    }

    #[test]
    fn schema_public_owned_by_pg_database_owner_follows_the_database() {
        // A new database's `public` schema belongs to pg_database_owner; a dump restored
        // with --no-owner leaves it so, whoever owned it in the original.
        let mut before = original();
        before
            .owners
            .insert("schema public".to_owned(), "acme".to_owned());
        let mut restored = restored_as_copy();
        restored
            .owners
            .insert("schema public".to_owned(), DATABASE_OWNER_ROLE.to_owned());
        assert_eq!(
            before.differences_after_restore(&restored, "copy"),
            Vec::<String>::new()
        );
        restored
            .owners
            .insert("schema public".to_owned(), "intruder".to_owned());
        assert_eq!(
            before.differences_after_restore(&restored, "copy"),
            ["schema public: owned by intruder, should be copy"]
        );
    }

    #[test]
    fn facts_round_trip_through_json() {
        let json = serde_json::to_string(&original()).expect("serialise");
        let back: DatabaseFacts = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, original());
    }
}
