//! The one way to build a reqwest client: reqwest's rustls backend runs on the ring crypto
//! provider (no aws-lc), and rustls panics when a client is built before a process-wide provider
//! is installed. Cargo unifies features, so this holds for every client in a workspace build;
//! `clippy.toml` forbids `reqwest::Client::new`/`builder` everywhere but here.

/// Installs the ring provider once per process; a provider installed earlier (by anyone) is
/// kept. Call it before a library builds a reqwest client of its own (rmcp's client, say).
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client builder with the provider installed: the only allowed way to configure a client.
#[allow(clippy::disallowed_methods)] // the one place allowed to build a client (see clippy.toml)
pub fn client_builder() -> reqwest::ClientBuilder {
    install_provider();
    reqwest::Client::builder()
}

/// A client with reqwest's defaults (what `reqwest::Client::new()` gives), provider installed.
///
/// # Panics
/// As `reqwest::Client::new` does, when the TLS backend cannot be initialised.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("reqwest's defaults build a client once the provider is installed")
}
