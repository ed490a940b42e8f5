//! Serving the built web app (`frontend/dist`): precompressed assets, cache
//! headers, and `index.html` for every path the app routes itself.

use std::path::Path;

use axum::{extract::Request, middleware::Next, response::Response, Router};
use http::{header, HeaderValue};
use tower_http::services::{ServeDir, ServeFile};
use tracing::{info, warn};

/// Trunk names the wasm, JS and CSS after a hash of their content, so a
/// browser may keep them for good: a new build has new names.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` (and every client-side route, which is `index.html`) names
/// the current build's assets, so it is revalidated on every load; the
/// `Last-Modified` that `ServeDir` sends makes that a cheap 304.
const REVALIDATE: &str = "no-cache";

/// The `Cache-Control` for a request path of the web app.
pub fn cache_control(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    if is_hashed(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

/// Whether a file name carries trunk's content hash: `{stem}-{hex}.{ext}` or
/// `{stem}-{hex}_bg.wasm`, with at least 8 hex digits.
fn is_hashed(name: &str) -> bool {
    let Some((stem, _ext)) = name.split_once('.') else {
        return false;
    };
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let Some((_, hash)) = stem.rsplit_once('-') else {
        return false;
    };
    hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The web app in `web_dir` as a router for every path the API does not
/// answer, or a page saying it is not built.
pub fn app(web_dir: &Path) -> Router {
    let index = web_dir.join("index.html");
    if !index.is_file() {
        warn!(dir = %web_dir.display(), "no web app built there (HEARTH_WEB_DIR); serving the API only");
        return Router::new().fallback(|| async {
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<!doctype html><title>Hearth</title><h1>Hearth</h1><p>The web app is not built. \
                 Run <code>./hearth.sh run</code> from the repository, or use the gRPC API on this port.</p>",
            )
        });
    }
    info!(dir = %web_dir.display(), "serving the web app");
    // Unknown paths get index.html so client-side routes survive a reload.
    Router::new()
        .fallback_service(
            ServeDir::new(web_dir)
                .precompressed_gzip()
                .fallback(ServeFile::new(index).precompressed_gzip()),
        )
        .layer(axum::middleware::from_fn(with_cache_control))
}

async fn with_cache_control(request: Request, next: Next) -> Response {
    let policy = cache_control(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == http::StatusCode::NOT_MODIFIED {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_hashed_assets_are_immutable() {
        for path in [
            "/hearth-frontend-6d1f0a3c9b2e4f18.js",
            "/hearth-frontend-6d1f0a3c9b2e4f18_bg.wasm",
            "/style-0123abcd4567ef89.css",
            "/nested/dir/app-deadbeef.js",
        ] {
            assert_eq!(cache_control(path), IMMUTABLE, "{path}");
        }
    }

    #[test]
    fn the_page_and_its_routes_are_revalidated() {
        for path in [
            "/",
            "/index.html",
            "/homes/demo",
            "/homes/demo/devices/demo-fan",
            "/homes/my-home-2024",
            "/style.css",
            "/hearth-frontend-xyz12345.js",
            "/app-abc.js",
        ] {
            assert_eq!(cache_control(path), REVALIDATE, "{path}");
        }
    }
}
