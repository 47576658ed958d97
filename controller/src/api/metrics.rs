//! `GET /metrics`: the Prometheus page, computed from the catalog at each scrape by
//! [`crate::metrics::render`]. It names tenants (their drills and recovery times), so it
//! asks for `Authorization: Bearer <[controller] metrics_token_file>` when a token is
//! configured, and otherwise answers only clients on loopback (a local Prometheus or
//! agent), never the network.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// Whether a scrape from `client` with `headers` may read the page.
fn scrape_allowed(
    token: Option<&SecretString>,
    client: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(token) = token else {
        return if client.ip().is_loopback() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "/metrics answers loopback clients only unless [controller] metrics_token_file is set",
            ))
        };
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("/metrics needs its bearer token"))?;
    // Compare digests, so the comparison's time says nothing about the token.
    if Sha256::digest(presented.as_bytes()) == Sha256::digest(token.expose_secret().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("wrong /metrics token"))
    }
}

pub async fn metrics_page(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    scrape_allowed(state.options.metrics_token.as_ref(), client, &headers)?;
    let regions: Vec<_> = state
        .options
        .regions
        .iter()
        .map(|region| region.name().clone())
        .collect();
    let text = crate::metrics::render(&state.catalog, &regions).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_token_only_loopback_scrapes_and_with_one_only_its_bearer() {
        let loopback: SocketAddr = "127.0.0.1:50000".parse().expect("address");
        let remote: SocketAddr = "192.0.2.7:50000".parse().expect("address");
        let none = HeaderMap::new();
        assert!(scrape_allowed(None, loopback, &none).is_ok());
        assert_eq!(
            scrape_allowed(None, remote, &none)
                .expect_err("remote")
                .status(),
            axum::http::StatusCode::FORBIDDEN
        );
        let token = SecretString::from("metrics-secret");
        let mut right = HeaderMap::new();
        right.insert(
            header::AUTHORIZATION,
            "Bearer metrics-secret".parse().expect("header"),
        );
        let mut wrong = HeaderMap::new();
        wrong.insert(
            header::AUTHORIZATION,
            "Bearer guess".parse().expect("header"),
        );
        assert!(scrape_allowed(Some(&token), remote, &right).is_ok());
        for (headers, client) in [(&wrong, remote), (&none, remote), (&none, loopback)] {
            assert_eq!(
                scrape_allowed(Some(&token), client, headers)
                    .expect_err("refused")
                    .status(),
                axum::http::StatusCode::UNAUTHORIZED
            );
        }
    }
}
