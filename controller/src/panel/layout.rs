//! The page frame, the stylesheet, and errors as pages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::PanelUser;
use crate::api::ApiError;

/// The panel's stylesheet: readable on a phone, usable with a keyboard (visible focus).
const STYLESHEET: &str = r#"
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;line-height:1.45;color:#1b1f24;background:#f6f7f9}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.6rem 1rem;background:#12355b;color:#fff}
header a{color:#fff}
header .who{margin-left:auto}
main{max-width:72rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #dde1e6;vertical-align:top}
.scroll{overflow-x:auto}
form.inline{display:inline}
label{display:block;margin:.5rem 0 .2rem;font-weight:600}
input,select,button{font:inherit;padding:.45rem .6rem;border:1px solid #8a94a0;border-radius:4px;max-width:100%}
button{background:#12355b;color:#fff;border-color:#12355b;cursor:pointer}
button.danger{background:#a4161a;border-color:#a4161a}
a:focus,input:focus,select:focus,button:focus{outline:3px solid #f0b429;outline-offset:2px}
.notice{background:#e3f2e1;border:1px solid #6aa84f;padding:.6rem;border-radius:4px}
.error{background:#fbe3e4;border:1px solid #a4161a;padding:.6rem;border-radius:4px}
.ok{color:#2b7a0b}.bad{color:#a4161a}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:1rem;margin:1rem 0}
@media (max-width:40rem){th.wide,td.wide{display:none}}
"#;

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

/// A whole page, with the panel's security headers.
pub fn page(title: &str, user: Option<&PanelUser>, body: Markup) -> Response {
    let body = PreEscaped(body.into_string());
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · lifeboat" }
                link rel="stylesheet" href="/panel.css";
                @if let Some(user) = user {
                    // For /panel.js's calls to the API (the session's CSRF token).
                    meta name="csrf-token" content=(user.csrf_token());
                    script src="/panel.js" defer {}
                }
            }
            body {
                header {
                    strong { a href="/" { "lifeboat" } }
                    @if let Some(user) = user {
                        @if user.user.role.is_staff() {
                            a href="/tenants" { "Tenants" }
                        }
                        @if user.user.role == crate::accounts::Role::Admin {
                            a href="/trash" id="trash-link" { "Trash" }
                        }
                        span class="who" {
                            a href="/account" id="account-link" { (user.user.login) } " (" (user.user.role) ")"
                        }
                        form class="inline" method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(user.csrf_token());
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    with_security_headers(markup.into_response())
}

/// No framing, no inline script (only `/panel.js`), no referrer, no caching of pages that show tenants' data.
pub fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `?done=…`: which action a page was redirected back from, for its fixed notice.
#[derive(Debug, serde::Deserialize)]
pub struct Notice {
    pub done: Option<String>,
}

/// An error, shown as a page (an expired session goes back to the sign-in page).
#[derive(Debug)]
pub struct PanelError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PanelError {
    fn from(error: E) -> Self {
        PanelError(error.into())
    }
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/login").into_response();
        }
        let message = self.0.message().to_owned();
        let mut response = page(
            status.canonical_reason().unwrap_or("Error"),
            None,
            html! {
                h1 { (status.canonical_reason().unwrap_or("Error")) }
                p class="error" role="alert" { (message) }
                p { a href="/" { "Back" } }
            },
        );
        *response.status_mut() = status;
        response
    }
}

/// Bytes as people read them.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
