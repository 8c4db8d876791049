//! The storefront's files as served: fingerprinted, precompressed, cached as they may be.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// The `src` of the page's module script and the inline import map.
fn script_and_map(html: &str) -> (String, String) {
    let src = html
        .split("<script type=\"module\" src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a module script")
        .to_owned();
    let map = html
        .split("<script type=\"importmap\">")
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .expect("an import map")
        .to_owned();
    (src, map)
}

#[tokio::test]
async fn pages_name_fingerprinted_assets_served_compressed_and_immutable() {
    let app = spawn_app().await;
    let sale = app.scheduled_sale().await;
    let page = app
        .client
        .get(app.url(&format!("/sales/{sale}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cache = page.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(
        cache.contains("max-age=60"),
        "pages are short-cached: {cache}"
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let (src, map) = script_and_map(&html);
    assert!(
        src.starts_with("/static/js/storefront.") && src.len() > "/static/js/storefront.js".len(),
        "the page names the fingerprinted script: {src}"
    );
    let map_hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map.as_bytes()));
    assert!(
        csp.contains(&format!("'sha256-{map_hash}'")),
        "the policy allows exactly the import map: {csp}"
    );
    let map: serde_json::Value = serde_json::from_str(&map).expect("the import map is JSON");
    assert_eq!(
        map["imports"]["/static/js/page.js"]
            .as_str()
            .map(|s| s.starts_with("/static/js/page.")),
        Some(true),
        "modules import each other through the map: {map}"
    );

    for (encoding, expect) in [
        ("br", Some("br")),
        ("gzip", Some("gzip")),
        ("identity", None),
    ] {
        let asset = app
            .client
            .get(app.url(&src))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200);
        assert_eq!(
            asset
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            expect,
            "Accept-Encoding: {encoding}"
        );
        assert_eq!(
            asset.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }

    let plain = app
        .client
        .get(app.url("/static/js/storefront.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200, "the plain name stays served");
    assert!(plain.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=60"));
    let missing = app
        .client
        .get(app.url("/static/js/nothing.0123456789ab.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers().get("cache-control").is_none(),
        "a miss is not cached for a year"
    );
}
