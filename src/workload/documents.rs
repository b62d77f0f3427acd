//! Where documents come from: the bundled set, a directory, or synthetic text.

use std::path::Path;

use super::{DocKind, Document};
use crate::error::ConfigError;

pub const CODE_EXTENSIONS: &[&str] = &[
    "py", "go", "rs", "tsx", "ts", "js", "sql", "java", "c", "cpp", "rb",
];
pub const TEXT_EXTENSIONS: &[&str] = &["md", "txt", "rst", "html"];

/// The documents written for turnbench, embedded in the binary.
const BUNDLED: &[(&str, &str)] = &[
    (
        "01_inventory_service.py",
        include_str!("documents/01_inventory_service.py"),
    ),
    (
        "02_rate_limiter.go",
        include_str!("documents/02_rate_limiter.go"),
    ),
    (
        "03_log_compactor.rs",
        include_str!("documents/03_log_compactor.rs"),
    ),
    (
        "04_booking_widget.tsx",
        include_str!("documents/04_booking_widget.tsx"),
    ),
    (
        "05_billing_reports.sql",
        include_str!("documents/05_billing_reports.sql"),
    ),
    (
        "06_route_planner.java",
        include_str!("documents/06_route_planner.java"),
    ),
    (
        "07_river_restoration.md",
        include_str!("documents/07_river_restoration.md"),
    ),
    (
        "08_incident_postmortem.md",
        include_str!("documents/08_incident_postmortem.md"),
    ),
    (
        "09_histoire_du_pain.txt",
        include_str!("documents/09_histoire_du_pain.txt"),
    ),
    (
        "10_onboarding_handbook.rst",
        include_str!("documents/10_onboarding_handbook.rst"),
    ),
    (
        "11_energia_solar.md",
        include_str!("documents/11_energia_solar.md"),
    ),
    (
        "12_museum_guide.html",
        include_str!("documents/12_museum_guide.html"),
    ),
];

/// The kind a file name implies, `None` for extensions turnbench does not read.
pub fn kind_of(name: &str) -> Option<DocKind> {
    let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
    if CODE_EXTENSIONS.contains(&ext.as_str()) {
        Some(DocKind::Code)
    } else if TEXT_EXTENSIONS.contains(&ext.as_str()) {
        Some(DocKind::Text)
    } else {
        None
    }
}

pub fn bundled() -> Vec<Document> {
    BUNDLED
        .iter()
        .map(|(name, text)| {
            Document::new(
                *name,
                kind_of(name).expect("bundled names have known extensions"),
                text,
            )
        })
        .collect()
}

/// Every readable file with a known extension directly in `dir`, by name.
pub fn load_directory(dir: &Path) -> Result<Vec<Document>, ConfigError> {
    let bad = |why: String| ConfigError::new(format!("--documents {}: {why}", dir.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("cannot read the directory ({e})")))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut docs = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(kind) = kind_of(&name) else { continue };
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read {name} ({e})")))?;
        let text = String::from_utf8_lossy(&bytes);
        if text.trim().is_empty() {
            continue;
        }
        docs.push(Document::new(name, kind, &text));
    }
    if docs.is_empty() {
        return Err(bad(format!(
            "no documents found (expected files ending in .{} or .{})",
            CODE_EXTENSIONS.join(", ."),
            TEXT_EXTENSIONS.join(", .")
        )));
    }
    Ok(docs)
}

/// `count` distinct prose documents of about `bytes` bytes each. Each opens with its
/// own number and draws its words from its own sequence, so no two share a prefix.
pub fn synthetic(bytes: usize, count: usize) -> Vec<Document> {
    const WORDS: &[&str] = &[
        "river", "cache", "lantern", "orbit", "meadow", "signal", "harbor", "copper", "window",
        "thunder", "garden", "pixel", "canyon", "violet", "engine", "saddle", "glacier", "parcel",
        "rhythm", "tunnel", "marble", "falcon", "ledger", "breeze", "quartz", "needle", "summit",
        "velvet", "anchor", "pepper",
    ];
    (0..count)
        .map(|i| {
            let mut text = format!("Synthetic document {i} of {count}.\n");
            // A small linear congruential walk: deterministic, different per document.
            let mut x: u64 =
                0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut words_in_line = 0;
            while text.len() < bytes {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                text.push_str(WORDS[(x >> 33) as usize % WORDS.len()]);
                words_in_line += 1;
                if words_in_line == 12 {
                    text.push_str(".\n");
                    words_in_line = 0;
                } else {
                    text.push(' ');
                }
            }
            text.truncate(bytes);
            Document::new(format!("synthetic_{i:03}.txt"), DocKind::Text, &text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_documents_are_many_sized_and_distinct() {
        let docs = bundled();
        assert!(docs.len() >= 11);
        for d in &docs {
            assert!(
                (10_000..=60_000).contains(&d.bytes),
                "{} is {} bytes",
                d.name,
                d.bytes
            );
        }
        assert!(docs.iter().any(|d| d.kind == DocKind::Code));
        assert!(docs.iter().any(|d| d.kind == DocKind::Text));
        // No two documents share a long prefix (the instruction is per kind, so
        // compare the documents' own text after it).
        let bodies: Vec<&str> = docs
            .iter()
            .map(|d| d.block.split_once("\n").unwrap().1)
            .collect();
        for (i, a) in bodies.iter().enumerate() {
            for b in &bodies[i + 1..] {
                let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
                assert!(common < 64, "two documents share {common} leading bytes");
            }
        }
    }

    #[test]
    fn synthetic_documents_have_the_size_asked_and_differ() {
        let docs = synthetic(5000, 3);
        assert_eq!(docs.len(), 3);
        assert!(docs.iter().all(|d| d.bytes == 5000));
        assert_ne!(docs[0].block, docs[1].block);
    }

    #[test]
    fn a_directory_reads_known_extensions_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.go"), "package main\n").unwrap();
        std::fs::write(dir.path().join("b.md"), "# Title\n").unwrap();
        std::fs::write(dir.path().join("c.bin"), "xx").unwrap();
        let docs = load_directory(dir.path()).unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| (d.name.as_str(), d.kind)).collect();
        assert_eq!(kinds, [("a.go", DocKind::Code), ("b.md", DocKind::Text)]);
        let empty = tempfile::tempdir().unwrap();
        assert!(load_directory(empty.path())
            .unwrap_err()
            .0
            .contains("no documents found"));
    }
}
