//! The storefront's files as a CDN wants them: every asset under a fingerprinted name
//! (`storefront.3f2a9c01b7de.js`, cached `immutable`), precompressed with brotli and
//! gzip next to the original, and pages that name the fingerprinted files.
//!
//! Built once when the router is made, from the source folder (`FLASHSALE_STATIC_DIR`)
//! into a folder of the temporary directory named by the hash of everything in it, so
//! processes of one release share one build and a build is never half-read: it is
//! written aside and renamed into place. `tower_http`'s `ServeDir` and `ServeFile` then
//! serve it, choosing `.br` or `.gz` by `Accept-Encoding`.
//!
//! ES modules import each other by plain relative names (`./page.js`), so the
//! fingerprints reach them through an import map in each page; the map is inline, so
//! the pages' Content-Security-Policy allows exactly its hash. The plain names stay
//! served too (short-cached), for a page cached from before a release.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

/// Hex digits of the content hash in a fingerprinted name (48 bits).
const FINGERPRINT_LEN: usize = 12;

/// Extensions worth compressing (text); images and fonts are compressed already.
const COMPRESSIBLE: &[&str] = &["js", "mjs", "css", "html", "svg", "json", "txt", "map"];

/// A built folder of pages and assets.
#[derive(Debug, Clone)]
pub struct BuiltAssets {
    /// Where the built files are.
    pub dir: PathBuf,
    /// `'sha256-…'` of the pages' import map, for their `script-src`.
    pub import_map_hash: String,
}

/// Builds (or finds already built) the assets of `src`.
pub fn build(src: &Path) -> io::Result<BuiltAssets> {
    let files = collect(src)?;
    let mut names = BTreeMap::new();
    for (rel, bytes) in &files {
        if !is_page(rel) {
            names.insert(rel.clone(), fingerprinted(rel, bytes));
        }
    }
    let map = import_map(&names);
    let import_map_hash = format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map.as_bytes()))
    );

    let mut build_id = Sha256::new();
    for (rel, bytes) in &files {
        build_id.update(rel.as_bytes());
        build_id.update([0]);
        build_id.update(Sha256::digest(bytes));
    }
    let id = hex::encode(&build_id.finalize()[..8]);
    let dir = std::env::temp_dir().join("flashsale-assets").join(&id);
    if !dir.join(".complete").exists() {
        write_build(&dir, &files, &names, &map)?;
    }
    Ok(BuiltAssets {
        dir,
        import_map_hash,
    })
}

/// Whether a request path names a fingerprinted file (`name.<12 hex>.ext`).
pub fn is_fingerprinted(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    let mut parts = file.rsplit('.');
    let (_ext, hash) = (parts.next(), parts.next());
    parts.next().is_some()
        && hash
            .is_some_and(|h| h.len() == FINGERPRINT_LEN && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_page(rel: &str) -> bool {
    !rel.contains('/') && rel.ends_with(".html")
}

/// Every file under `src`, by its path relative to it (with `/`), skipping dot-files.
fn collect(src: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(src) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((rel, fs::read(&path)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `js/page.js` → `js/page.<hash>.js`.
fn fingerprinted(rel: &str, bytes: &[u8]) -> String {
    let hash = hex::encode(Sha256::digest(bytes));
    let hash = &hash[..FINGERPRINT_LEN];
    match rel.rsplit_once('.') {
        Some((stem, ext)) if !stem.ends_with('/') => format!("{stem}.{hash}.{ext}"),
        _ => format!("{rel}.{hash}"),
    }
}

/// The import map every page carries: each module's plain URL to its fingerprinted one.
fn import_map(names: &BTreeMap<String, String>) -> String {
    let imports: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .filter(|(rel, _)| rel.ends_with(".js") || rel.ends_with(".mjs"))
        .map(|(rel, hashed)| (format!("/static/{rel}"), format!("/static/{hashed}").into()))
        .collect();
    serde_json::json!({ "imports": imports }).to_string()
}

/// A page naming fingerprinted files, with the import map before its first script.
fn rewrite_page(html: &str, names: &BTreeMap<String, String>, map: &str) -> String {
    let mut out = html.to_owned();
    for (rel, hashed) in names {
        out = out.replace(
            &format!("\"/static/{rel}\""),
            &format!("\"/static/{hashed}\""),
        );
    }
    let tag = format!("<script type=\"importmap\">{map}</script>\n  ");
    match out.find("<script") {
        Some(at) => out.insert_str(at, &tag),
        None => {}
    }
    out
}

fn write_build(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    names: &BTreeMap<String, String>,
    map: &str,
) -> io::Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    fs::create_dir_all(parent)?;
    let aside = parent.join(format!(
        ".building-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    for (rel, bytes) in files {
        if is_page(rel) {
            let page = rewrite_page(&String::from_utf8_lossy(bytes), names, map);
            put(&aside, rel, page.as_bytes())?;
        } else {
            put(&aside, rel, bytes)?;
            put(&aside, &names[rel], bytes)?;
        }
    }
    fs::write(aside.join(".complete"), b"")?;
    match fs::rename(&aside, dir) {
        Ok(()) => Ok(()),
        // Another process of the same release built it first: theirs is the same.
        Err(_) if dir.join(".complete").exists() => {
            let _ = fs::remove_dir_all(&aside);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes a file and, when it is text and compresses, its `.br` and `.gz` siblings.
fn put(root: &Path, rel: &str, bytes: &[u8]) -> io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, bytes)?;
    let ext = rel.rsplit('.').next().unwrap_or("");
    if !COMPRESSIBLE.contains(&ext) {
        return Ok(());
    }
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 11, 22);
        w.write_all(bytes)?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    let gz = gz.finish()?;
    for (suffix, packed) in [("br", br), ("gz", gz)] {
        if packed.len() < bytes.len() {
            fs::write(root.join(format!("{rel}.{suffix}")), packed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprinted_names_carry_the_content_hash_before_the_extension() {
        let name = fingerprinted("js/page.js", b"x");
        assert!(
            name.starts_with("js/page.") && name.ends_with(".js"),
            "{name}"
        );
        assert!(is_fingerprinted(&format!("/static/{name}")));
        assert!(!is_fingerprinted("/static/js/page.js"));
        assert!(!is_fingerprinted("/static/js/proof-worker.js"));
        assert_ne!(name, fingerprinted("js/page.js", b"y"));
    }

    #[test]
    fn pages_name_fingerprinted_files_and_carry_the_import_map_first() {
        let names = BTreeMap::from([
            (
                "css/app.css".to_owned(),
                "css/app.0123456789ab.css".to_owned(),
            ),
            ("js/a.js".to_owned(), "js/a.ba9876543210.js".to_owned()),
        ]);
        let map = import_map(&names);
        assert_eq!(
            map,
            r#"{"imports":{"/static/js/a.js":"/static/js/a.ba9876543210.js"}}"#
        );
        let page = rewrite_page(
            "<link href=\"/static/css/app.css\">\n  <script type=\"module\" src=\"/static/js/a.js\"></script>",
            &names,
            &map,
        );
        assert_eq!(
            page,
            format!(
                "<link href=\"/static/css/app.0123456789ab.css\">\n  <script type=\"importmap\">{map}</script>\n  \
                 <script type=\"module\" src=\"/static/js/a.ba9876543210.js\"></script>"
            )
        );
    }
}
