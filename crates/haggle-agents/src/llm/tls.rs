//! HTTPS for the model providers: reqwest's rustls backend with the ring crypto provider (no
//! aws-lc). rustls needs a process-wide provider before any reqwest client is built — and since
//! cargo unifies features, that holds for every reqwest client in a process linking this crate.

/// Installs the ring provider once; a provider installed earlier (by anyone) is kept.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
