//! A random workload full of shared keys, for the tests of parallel apply
//! and of merged statements: hot rows, unique names reused after a delete
//! or a rename, children and their parents with a cascading foreign key,
//! and a trigger on the children.

use std::collections::{BTreeMap, BTreeSet};

use drc_tests::MariaDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SCHEMA: &str = "CREATE DATABASE pw;
    CREATE TABLE pw.p (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, UNIQUE KEY (name)) ENGINE=InnoDB;
    CREATE TABLE pw.c (id INT PRIMARY KEY, p_id INT NOT NULL, v INT NOT NULL,
      FOREIGN KEY (p_id) REFERENCES pw.p (id) ON DELETE CASCADE) ENGINE=InnoDB;
    CREATE TABLE pw.k (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB;
    CREATE TABLE pw.audit (id INT AUTO_INCREMENT PRIMARY KEY, c_id INT NOT NULL, what VARCHAR(10)) ENGINE=InnoDB;
    CREATE TRIGGER pw.c_ai AFTER INSERT ON pw.c FOR EACH ROW
      INSERT INTO pw.audit (c_id, what) VALUES (NEW.id, 'insert');
    INSERT INTO pw.k VALUES (0, 0), (1, 0), (2, 0), (3, 0), (4, 0)";

/// What the source holds, so the generator only writes valid statements.
#[derive(Default)]
pub struct Model {
    parents: BTreeMap<i64, String>,
    children: BTreeMap<i64, i64>,
    next_id: i64,
}

impl Model {
    fn free_name(&self, rng: &mut StdRng) -> String {
        // A small pool, so names come back after a delete or a rename.
        let used: BTreeSet<&String> = self.parents.values().collect();
        loop {
            let name = format!("name-{}", rng.gen_range(0..40));
            if !used.contains(&name) {
                return name;
            }
        }
    }

    fn pick<V>(map: &BTreeMap<i64, V>, rng: &mut StdRng) -> Option<i64> {
        if map.is_empty() {
            return None;
        }
        map.keys().nth(rng.gen_range(0..map.len())).copied()
    }

    /// One statement that is valid now; the model follows it.
    pub fn statement(&mut self, rng: &mut StdRng) -> String {
        loop {
            match rng.gen_range(0..8) {
                0 | 1 if self.parents.len() < 30 => {
                    self.next_id += 1;
                    let (id, name) = (self.next_id, self.free_name(rng));
                    self.parents.insert(id, name.clone());
                    return format!("INSERT INTO pw.p VALUES ({id}, '{name}')");
                }
                2 => {
                    let Some(id) = Self::pick(&self.parents, rng) else {
                        continue;
                    };
                    let name = self.free_name(rng);
                    self.parents.insert(id, name.clone());
                    return format!("UPDATE pw.p SET name = '{name}' WHERE id = {id}");
                }
                3 if self.parents.len() > 5 => {
                    let Some(id) = Self::pick(&self.parents, rng) else {
                        continue;
                    };
                    self.parents.remove(&id);
                    self.children.retain(|_, p| *p != id);
                    return format!("DELETE FROM pw.p WHERE id = {id}");
                }
                4 => {
                    let Some(p) = Self::pick(&self.parents, rng) else {
                        continue;
                    };
                    self.next_id += 1;
                    let id = self.next_id;
                    self.children.insert(id, p);
                    return format!("INSERT INTO pw.c VALUES ({id}, {p}, 0)");
                }
                5 => {
                    let Some(id) = Self::pick(&self.children, rng) else {
                        continue;
                    };
                    return format!("UPDATE pw.c SET v = v + 1 WHERE id = {id}");
                }
                6 => {
                    let Some(id) = Self::pick(&self.children, rng) else {
                        continue;
                    };
                    self.children.remove(&id);
                    return format!("DELETE FROM pw.c WHERE id = {id}");
                }
                7 => {
                    let (id, by) = (rng.gen_range(0..5), rng.gen_range(1..100));
                    return format!("UPDATE pw.k SET v = v + {by} WHERE id = {id}");
                }
                _ => {}
            }
        }
    }
}

/// Creates the schema on `src` and commits `n` random transactions of 1 to
/// 4 statements each (seeded, so every run writes the same).
pub async fn write_workload(src: &MariaDb, seed: u64, n: usize) {
    src.exec(SCHEMA).await.expect("schema");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    for _ in 0..n {
        let k = rng.gen_range(1..=4);
        let stmts: Vec<String> = (0..k).map(|_| model.statement(&mut rng)).collect();
        src.exec(&format!("START TRANSACTION; {}; COMMIT", stmts.join("; ")))
            .await
            .expect("source transaction");
    }
}
