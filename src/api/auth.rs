//! OAuth 2.0 client credentials and the Active Client API's request check.
//!
//! `POST /oauth/token` trades an institution's code (`client_id`) and API key
//! (`client_secret`) for a random Bearer token. Redis keeps `ipg:token:<sha256(token)>` →
//! `<institution>|<fingerprint of the key>` with the token's TTL, so every instance accepts
//! it, and changing the key in the configuration invalidates every token issued with the
//! old one (its fingerprint no longer matches).
//!
//! Every `/api/v2/gw/*` call then needs `Authorization: Bearer <token>` and `Signature`:
//! lowercase hex HMAC-SHA256 with the institution's API key over the raw body for
//! POST/DELETE/PUT, and over the raw query string exactly as sent (the bytes after `?`,
//! empty when there is none) for GET. The caller's institution comes from the token only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::{refuse, Door};
use super::{json_body, one_header, query_once, read_body, ApiState};
use crate::domain::InstitutionMode;
use crate::error::SwitchError;
use crate::routing::Institution;
use crate::signature;

/// The authenticated institution of an Active Client API call.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<Institution>);

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Equal digests of two secrets, compared without an early exit.
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Names the key a token was issued with, without revealing it.
fn fingerprint(api_key: &str) -> String {
    signature::sign(api_key.as_bytes(), b"ipg-switch oauth token")[..32].to_owned()
}

fn auth_error(why: &str) -> SwitchError {
    SwitchError::Authentication(why.to_owned())
}

/// `POST /oauth/token`.
#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "auth_token",
    tag = "Authentication",
    summary = "OAuth 2.0 client credentials",
    description = "client_id is the institution code, client_secret its API key. The token is stored in Redis for api.token_ttl_secs; changing the institution's API key invalidates its tokens.",
    request_body(content = ref("#/components/schemas/TokenRequest"), content_type = "application/json"),
    responses(
        (status = 400, response = super::openapi::Invalid),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "Token issued", body = ref("#/components/schemas/Token"), content_type = "application/json"),
    ),
)]
pub async fn token(State(st): State<ApiState>, req: Request) -> Response {
    let clock = *st.clock();
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, &parts.headers, &st.settings, &clock).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match issue(&st, &bytes).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => refuse(&e, Door::Gateway, &clock),
    }
}

async fn issue(st: &ApiState, bytes: &[u8]) -> Result<Value, SwitchError> {
    let v = json_body(bytes)?;
    let field = |f: &str| -> Result<String, SwitchError> {
        match v.get(f) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(SwitchError::invalid(f, "is required")),
        }
    };
    if field("grant_type")? != "client_credentials" {
        return Err(SwitchError::invalid(
            "grant_type",
            "must be client_credentials",
        ));
    }
    let (client_id, secret) = (field("client_id")?, field("client_secret")?);
    // The same answer for an unknown client and a wrong secret: no probing for codes.
    let inst = st
        .switch
        .routing
        .by_code(&client_id)
        .filter(|i| i.mode == InstitutionMode::Hosted && same_secret(&i.api_key, &secret))
        .ok_or_else(|| auth_error("invalid client credentials"))?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let ttl = st.settings.token_ttl.as_secs();
    let record = format!("{}|{}", inst.code, fingerprint(&inst.api_key));
    st.switch
        .hosted
        .store
        .put_token(&sha256_hex(token.as_bytes()), &record, ttl)
        .await?;
    tracing::info!(institution = %inst.code, "access token issued");
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": ttl.to_string(),
        "access_token": token,
    }))
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case and may be followed by any run of spaces or tabs (RFC 9110 s11.1,
/// s11.4; RFC 6750 s2.1); `None` for another scheme or an empty token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let split = value.find([' ', '\t'])?;
    let (scheme, token) = value.split_at(split);
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains([' ', '\t']))
        .then_some(token)
}

/// The institution a Bearer token stands for.
async fn caller_of(
    st: &ApiState,
    authorization: Option<&str>,
) -> Result<Arc<Institution>, SwitchError> {
    let token = authorization
        .and_then(bearer_token)
        .ok_or_else(|| auth_error("Authorization: Bearer <token> is required"))?;
    let record = st
        .switch
        .hosted
        .store
        .token(&sha256_hex(token.as_bytes()))
        .await?
        .ok_or_else(|| auth_error("invalid or expired token"))?;
    // The fingerprint is hex, so the last '|' separates it whatever the code contains.
    let (code, fp) = record
        .rsplit_once('|')
        .ok_or_else(|| auth_error("invalid or expired token"))?;
    let inst = st
        .switch
        .routing
        .by_code(code)
        .filter(|i| same_secret(&fingerprint(&i.api_key), fp))
        // The institution's key changed (or it left the configuration): tokens die with it.
        .ok_or_else(|| auth_error("invalid or expired token"))?;
    Ok(inst.clone())
}

/// Middleware of `/api/v2/gw/*`: size limit, Bearer token, `Signature`; passes the caller
/// on as [`Caller`] and the body on as read.
pub async fn gateway(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let clock = *st.clock();
    let (mut parts, body) = req.into_parts();
    // A bulk issuance's body may be larger (api.max_batch_bytes).
    let path = parts.uri.path();
    let limit = if path.ends_with("/bill/batch")
        || path.ends_with("/bill/batch/jobs")
        || path.ends_with("/bill/batch/recurring")
    {
        st.settings.max_batch_bytes
    } else {
        st.settings.max_body_bytes
    };
    let bytes =
        match super::read_body_up_to(body, &parts.headers, &st.settings, &clock, limit).await {
            Ok(b) => b,
            Err(r) => return r,
        };
    let (authorization, sig) = match (
        one_header(&parts.headers, header::AUTHORIZATION.as_str()),
        one_header(&parts.headers, "signature"),
        query_once(&parts.uri),
    ) {
        (Ok(a), Ok(s), Ok(())) => (a, s),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return refuse(&e, Door::Gateway, &clock),
    };
    let inst = match caller_of(&st, authorization).await {
        Ok(i) => i,
        Err(e) => return refuse(&e, Door::Gateway, &clock),
    };
    let signed: &[u8] = if parts.method == Method::GET || parts.method == Method::HEAD {
        parts.uri.query().unwrap_or("").as_bytes()
    } else {
        &bytes
    };
    let Some(sig) = sig else {
        return refuse(
            &auth_error("Signature header is required"),
            Door::Gateway,
            &clock,
        );
    };
    if !signature::verify(inst.api_key.as_bytes(), signed, sig) {
        return refuse(
            &auth_error("signature does not match"),
            Door::Gateway,
            &clock,
        );
    }
    parts.extensions.insert(Caller(inst));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_fingerprints() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert_eq!(fingerprint("k"), fingerprint("k"));
        assert_ne!(fingerprint("k"), fingerprint("k2"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_whitespace_tolerant() {
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "BeArEr   abc",
            "Bearer\tabc",
            "  Bearer abc  ",
        ] {
            assert_eq!(bearer_token(v), Some("abc"), "{v:?}");
        }
        for v in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Bearer a b",
            "",
        ] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
