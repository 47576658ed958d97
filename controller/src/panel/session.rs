//! Sign-in and sign-out pages.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::html;
use secrecy::SecretString;
use serde::Deserialize;

use super::PanelUser;
use super::layout::{PanelError, page};
use crate::api::AppState;
use crate::api::v1::session::{LoginRequest, sign_in, sign_out};

/// `/`: the signed-in user's start page, or the sign-in page.
pub async fn home(user: Result<PanelUser, PanelError>) -> Response {
    match user {
        Err(_) => Redirect::to("/login").into_response(),
        Ok(user) => match (&user.user.tenant, user.user.role.is_staff()) {
            (Some(tenant), false) => Redirect::to(&format!("/tenants/{tenant}")).into_response(),
            _ => Redirect::to("/tenants").into_response(),
        },
    }
}

fn login_form(message: Option<&str>) -> maud::Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(message) = message {
            p class="error" role="alert" id="login-error" { (message) }
        }
        form method="post" action="/login" class="card" {
            label for="login" { "Login" }
            input id="login" name="login" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            label for="code" { "Authenticator code (staff, and customers who enrolled)" }
            input id="code" name="code" inputmode="numeric" autocomplete="one-time-code";
            p { button type="submit" { "Sign in" } }
        }
    }
}

pub async fn login_page() -> Response {
    page("Sign in", None, login_form(None))
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    login: String,
    password: SecretString,
    #[serde(default)]
    code: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoginForm")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let code = form.code.trim();
    let request = LoginRequest {
        login: form.login,
        password: form.password,
        code: (!code.is_empty()).then(|| SecretString::from(code.to_owned())),
    };
    match sign_in(&state, peer, jar, &request).await {
        Ok((jar, _, _)) => (jar, Redirect::to("/")).into_response(),
        Err(error) => {
            let status = error.status();
            let message =
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS {
                    error.message().to_owned()
                } else {
                    "signing in failed; try again in a moment".to_owned()
                };
            let mut response = page("Sign in", None, login_form(Some(&message)));
            *response.status_mut() = status;
            response
        }
    }
}

/// The CSRF token of a form that carries nothing else.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    user: PanelUser,
    jar: CookieJar,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let jar = sign_out(&state, jar).await?;
    Ok((jar, Redirect::to("/login")).into_response())
}
