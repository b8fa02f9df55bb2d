//! HMAC-SHA256 signatures as IPG uses them: lowercase hex over the exact bytes, keyed with
//! the API key, verified in constant time.

pub mod snap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The HTTP header that carries a body's signature, both ways (IPG's `Signature`).
pub const SIGNATURE_HEADER: &str = "Signature";

/// Lowercase hex HMAC-SHA256 of `body` with `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex, either case) is the HMAC of `body` with `key`. The comparison
/// of the MAC is constant-time (`Mac::verify_slice`).
pub fn verify(key: &[u8], body: &[u8], signature: &str) -> bool {
    Verifier::new(key).verify(body, signature)
}

/// HMAC-SHA256 keyed once (RFC 2104: the key's inner and outer pads hashed up front), for
/// a key that verifies many bodies: each check starts from a copy of the keyed state
/// instead of hashing the pads again (two SHA-256 blocks of a request's five or so).
#[derive(Clone)]
pub struct Verifier(HmacSha256);

impl Verifier {
    pub fn new(key: &[u8]) -> Verifier {
        Verifier(HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// [`verify`] with this key.
    pub fn verify(&self, body: &[u8], signature: &str) -> bool {
        let Ok(given) = hex::decode(signature.trim()) else {
            return false;
        };
        let mut mac = self.0.clone();
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    }
}

impl std::fmt::Debug for Verifier {
    /// Never the key, nor anything derived from it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_and_refuses() {
        let s = sign(b"k", b"{}");
        assert!(verify(b"k", b"{}", &s));
        assert!(verify(b"k", b"{}", &s.to_uppercase()));
        assert!(!verify(b"k", b"{ }", &s));
        assert!(!verify(b"other", b"{}", &s));
        assert!(!verify(b"k", b"{}", "zz"));
        assert!(!verify(b"k", b"{}", ""));
    }

    #[test]
    fn a_verifier_starts_every_check_from_the_key_alone() {
        // RFC 4231 test case 2, then other bodies with the same verifier: nothing of one
        // check is carried into the next, a refusal included.
        let v = Verifier::new(b"Jefe");
        let body = b"what do ya want for nothing?";
        let good = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(v.verify(body, good));
        assert!(!v.verify(b"other", good));
        assert!(v.verify(b"other", &sign(b"Jefe", b"other")));
        assert!(v.verify(body, good));
        assert_eq!(format!("{v:?}"), "Verifier(..)");
    }
}
