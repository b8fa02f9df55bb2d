//! The outgoing HTTP client (reqwest, rustls): one builder for every caller that speaks to
//! institutions (webhook delivery, passive institutions' API), so timeouts, pooling,
//! redirects and the user agent are set in one place.

use std::time::Duration;

/// Builds a shared HTTP client: a connection pool per host of `per_host` idle connections,
/// a whole-request `request_timeout` and a `connect_timeout`, redirects never followed.
///
/// # Errors
/// The TLS backend cannot be initialised.
pub fn client(
    request_timeout: Duration,
    connect_timeout: Duration,
    per_host: usize,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(connect_timeout)
        .pool_max_idle_per_host(per_host)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ipg-switch/", env!("CARGO_PKG_VERSION")))
        .build()
}
