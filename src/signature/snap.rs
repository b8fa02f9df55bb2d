//! SNAP BI signatures (Bank Indonesia's national open API standard; ASPI "Standar Teknis dan
//! Keamanan" v1.0.2 s2.1.5-2.1.6; `snap-reference.md` s5 beside the project):
//!
//! - the B2B access token request (service 73): `X-SIGNATURE` = Base64 of SHA256withRSA
//!   (RSASSA-PKCS1-v1_5, SHA-256) over `<X-CLIENT-KEY>|<X-TIMESTAMP>`, verified with the
//!   partner's public key ([`RsaPublicKey`], `ring`);
//! - a transactional request: `X-SIGNATURE` = Base64 of HMAC-SHA512, keyed with the client
//!   secret's UTF-8 bytes, over
//!   `METHOD:EndpointUrl:AccessToken:hex(sha256(minify(body))):X-TIMESTAMP`
//!   ([`string_to_sign`], [`Hmac512`]).
//!
//! Everything is computed over the bytes received: the body is minified by stripping the
//! whitespace outside JSON strings (what Go's `json.Compact` does), never re-serialized,
//! and the path and timestamp are taken as sent.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

type HmacSha512 = Hmac<Sha512>;

/// `body` without the whitespace (space, tab, CR, LF) outside JSON strings, every other
/// byte as it came (key order, number text, escapes): Go's `json.Compact`, which SNAP's
/// reference implementations agree with on compact input (snap-reference.md s5.2 rule 5).
/// Bytes that are not JSON are kept as they are, so a signature over them still verifies.
pub fn minify(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

/// Lowercase hex SHA-256 of the minified body (64 characters; of an empty body, the hash
/// of the empty string).
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(minify(body)))
}

/// The transactional string to sign:
/// `METHOD:EndpointUrl:AccessToken:hex(sha256(minify(body))):X-TIMESTAMP`, with `method`
/// in upper case, `endpoint` the relative URL as the client sent it (path and query),
/// `token` without `Bearer `, `timestamp` the header's string as sent.
pub fn string_to_sign(
    method: &str,
    endpoint: &str,
    token: &str,
    body: &[u8],
    timestamp: &str,
) -> String {
    format!(
        "{}:{endpoint}:{token}:{}:{timestamp}",
        method.to_ascii_uppercase(),
        body_hash(body)
    )
}

/// The access token request's string to sign: `<client id>|<X-TIMESTAMP>`.
pub fn token_string_to_sign(client_id: &str, timestamp: &str) -> String {
    format!("{client_id}|{timestamp}")
}

/// A signature as sent: standard Base64 (88 characters for SHA-512's 64 bytes), or
/// lowercase/uppercase hex (128), which some partners send (snap-reference.md s9 question 1).
fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    let s = signature.trim();
    if s.len() == 128 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(s).ok();
    }
    B64.decode(s).ok()
}

/// HMAC-SHA512 keyed once with a partner's client secret (its UTF-8 bytes, not decoded).
#[derive(Clone)]
pub struct Hmac512(HmacSha512);

impl Hmac512 {
    pub fn new(client_secret: &[u8]) -> Hmac512 {
        Hmac512(HmacSha512::new_from_slice(client_secret).expect("HMAC takes keys of any length"))
    }

    /// Standard Base64 (with padding) of the MAC of `string_to_sign`.
    pub fn sign(&self, string_to_sign: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(string_to_sign.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` (Base64 or hex) is the MAC of `string_to_sign`, compared in
    /// constant time (`Mac::verify_slice`).
    pub fn verify(&self, string_to_sign: &str, signature: &str) -> bool {
        let Some(given) = decode_signature(signature) else {
            return false;
        };
        let mut mac = self.0.clone();
        mac.update(string_to_sign.as_bytes());
        mac.verify_slice(&given).is_ok()
    }
}

impl std::fmt::Debug for Hmac512 {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hmac512(..)")
    }
}

/// A partner's RSA public key, for SHA256withRSA signatures (RSASSA-PKCS1-v1_5 with
/// SHA-256, 2048 to 8192 bits), verified by `ring`.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// PKCS#1 `RSAPublicKey` DER, as `ring` takes it.
    pkcs1: Vec<u8>,
}

/// Why a public key cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RSA public key: {0}")]
pub struct KeyError(pub &'static str);

/// One DER TLV: (tag, content, rest). Definite lengths only (DER has no other).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), KeyError> {
    let bad = KeyError("malformed DER");
    let (&tag, rest) = input.split_first().ok_or(bad.clone())?;
    let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad);
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// DER of `rsaEncryption` (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

impl RsaPublicKey {
    /// From PEM: `BEGIN PUBLIC KEY` (X.509 SubjectPublicKeyInfo, as BCA asks partners to
    /// send) or `BEGIN RSA PUBLIC KEY` (PKCS#1).
    ///
    /// # Errors
    /// Not PEM, not Base64, not an RSA key in either form.
    pub fn from_pem(pem: &str) -> Result<RsaPublicKey, KeyError> {
        let (label, der) = pem_body(pem)?;
        match label {
            "PUBLIC KEY" => RsaPublicKey::from_spki(&der),
            "RSA PUBLIC KEY" => Ok(RsaPublicKey { pkcs1: der }),
            _ => Err(KeyError(
                "PEM label is neither PUBLIC KEY nor RSA PUBLIC KEY",
            )),
        }
    }

    /// From SubjectPublicKeyInfo DER:
    /// `SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }`.
    ///
    /// # Errors
    /// Another structure or another algorithm.
    pub fn from_spki(der: &[u8]) -> Result<RsaPublicKey, KeyError> {
        let (tag, spki, _) = tlv(der)?;
        if tag != 0x30 {
            return Err(KeyError("SubjectPublicKeyInfo is not a SEQUENCE"));
        }
        let (tag, algorithm, rest) = tlv(spki)?;
        let (oid_tag, oid, _) = tlv(algorithm)?;
        if tag != 0x30 || oid_tag != 0x06 || oid != RSA_ENCRYPTION {
            return Err(KeyError("the algorithm is not rsaEncryption"));
        }
        let (tag, bits, _) = tlv(rest)?;
        match bits.split_first() {
            Some((0, key)) if tag == 0x03 => Ok(RsaPublicKey {
                pkcs1: key.to_vec(),
            }),
            _ => Err(KeyError("the key is not a BIT STRING")),
        }
    }

    /// The modulus' size in bits (0 for a key that does not parse as PKCS#1
    /// `RSAPublicKey`). `ring` verifies keys of 2048 to 8192 bits only.
    pub fn bits(&self) -> usize {
        let modulus = tlv(&self.pkcs1)
            .ok()
            .filter(|(tag, _, _)| *tag == 0x30)
            .and_then(|(_, seq, _)| tlv(seq).ok())
            .filter(|(tag, _, _)| *tag == 0x02)
            .map(|(_, n, _)| n);
        let Some(n) = modulus else {
            return 0;
        };
        let n = match n.iter().position(|b| *b != 0) {
            Some(i) => &n[i..],
            None => return 0,
        };
        n.len() * 8 - n[0].leading_zeros() as usize
    }

    /// Whether `signature` (standard Base64) is a SHA256withRSA signature of `message` by
    /// this key's private half.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(sig) = B64.decode(signature.trim()) else {
            return false;
        };
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.pkcs1,
        )
        .verify(message, &sig)
        .is_ok()
    }
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bytes)", self.pkcs1.len())
    }
}

/// The label and the decoded body of the first PEM block in `pem`.
fn pem_body(pem: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let start = pem
        .find("-----BEGIN ")
        .ok_or(KeyError("no PEM BEGIN line"))?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest
        .find("-----")
        .ok_or(KeyError("a PEM BEGIN line without end"))?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end = body
        .find(&format!("-----END {label}-----"))
        .ok_or(KeyError("no PEM END line"))?;
    let b64: String = body[..end].split_whitespace().collect();
    let der = B64
        .decode(b64)
        .map_err(|_| KeyError("the PEM body is not Base64"))?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    //! The published vectors of snap-reference.md s5.5: TV1 and TV2/TV3 are Midtrans'
    //! (`Midtrans/SNAP-BI-Signature-Demo`), TV4-TV6 pin our own reading.
    use super::*;

    const TV2_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAlWbtlh3eM+bW3n5AFj42
wddC4L7tQqbLiCFbTv8K67yng9iwK5mEn+UMXiRhvB2JVWFafCPPxFamsiVG3Mjn
eGjC0BYgmpmw4qXnAnyO3nCdCuPtmZ3ljhKvSTPdWZxrcLi1Xa9V/+Pzb8hrjb5i
wMn6SZFNeMmZYgFKiSeueo6TPln2PoTqXCzs1HtsM8eUVe8GAsjJe/3dYl992nyX
OpG21GgNu8o5T3WOptPg6GdDTWkTWUu483yRbVVy04Pz4L8DDZTDv+WcsAViDn1r
A/jB1Auj/UGKx2ovGcBH/a/hor5TbABbODU6cPTHT54K3sSZtvZNV4eFDB1f/4wd
fwIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn tv1_symmetric_hmac_sha512() {
        let body = br#"{"partnerReferenceNo":"2020102900000000000001","amount":{"value":"12345678.00","currency":"IDR"},"feeAmount":{"value":"12345678.00","currency":"IDR"},"merchantId":"00007100010926","terminalId":"213141251124","validityPeriod":"2009-07-03T12:08:56-07:00"}"#;
        assert_eq!(
            body_hash(body),
            "01463f60dbb6ca538581579dd95b31c8ba9fc6600eca750e4d8460ca4e402111"
        );
        let s = string_to_sign(
            "post",
            "/v1.0/qr/qr-mpm-generate",
            "myaccesstoken",
            body,
            "2024-03-05T10:37:16.196Z",
        );
        assert_eq!(s, "POST:/v1.0/qr/qr-mpm-generate:myaccesstoken:01463f60dbb6ca538581579dd95b31c8ba9fc6600eca750e4d8460ca4e402111:2024-03-05T10:37:16.196Z");
        let mac = Hmac512::new(b"myclientsecret");
        let want = "wmzT7yjg1SxxCsxNsFgCR9SYXiZGGbceF6fV8xe97sAMHxZ+7OEBMIBmvb6Sj6GcksGp3iv77DiomgSbcST3XQ==";
        assert_eq!(mac.sign(&s), want);
        assert!(mac.verify(&s, want));
        // The same MAC in hex is accepted too (question 1); another one is not.
        assert!(mac.verify(&s, "c26cd3ef28e0d52c710acc4db0580247d4985e264619b71e17a7d5f317bdeec00c1f167eece101308066bdbe928fa19c92c1a9de2bfbec38a89a049b7124f75d"));
        assert!(!mac.verify(&s.replace("POST", "PUT"), want));
        assert!(!Hmac512::new(b"other").verify(&s, want));
        assert!(!mac.verify(&s, "not base64!"));
        // The pretty-printed body minifies to the same bytes.
        let pretty = "{\n  \"partnerReferenceNo\": \"2020102900000000000001\",\n  \"amount\": {\n    \"value\": \"12345678.00\",\n    \"currency\": \"IDR\"\n  },\n  \"feeAmount\": {\"value\": \"12345678.00\", \"currency\": \"IDR\"},\n  \"merchantId\": \"00007100010926\",\n  \"terminalId\": \"213141251124\",\n  \"validityPeriod\": \"2009-07-03T12:08:56-07:00\"\n}";
        assert_eq!(minify(pretty.as_bytes()), body.to_vec());
    }

    #[test]
    fn tv2_token_signature_verifies_with_the_spki_public_key() {
        let key = RsaPublicKey::from_pem(TV2_PUBLIC).unwrap();
        assert_eq!(key.bits(), 2048);
        let s = token_string_to_sign("G1234325-SNAP", "2024-03-01T08:27:49.024Z");
        assert_eq!(s, "G1234325-SNAP|2024-03-01T08:27:49.024Z");
        let sig = "WzW49tYIgKIBmBi/gVBHGLAkhEaZlXM11zcZxAiyHji6TLPjPbwLu3Z45it25AIeG0XDItcdTSkds47zFEMh6IP0PXPIP1+Ey4RmX/o2fuYRF/xBHvfvKnMmANMTS1axsXBSW3EHqYpbVrkCcqNnB3u+wu63us9WIhRZaWgxgQ2PJLaiVHIwgu9u7jxkWX7Bg4rerZH3RKdQfIJAAJsSN13efR7VdSAyzU7QaKjgislxrLqmesYNJkbD03XLjHdo6YWuzAVV7xdZRpLiGkIAkW7luXTBZYBO+4oENZAPQYzrLeN1qRY1Sr7BgLONCA2QA26BB6SYW4R7qofS9+RyOQ==";
        assert!(key.verify(s.as_bytes(), sig));
        assert!(!key.verify(b"G1234325-SNAP|2024-03-01T08:27:49.025Z", sig));
        assert!(!key.verify(s.as_bytes(), "AAAA"));
    }

    #[test]
    fn tv3_asymmetric_transactional_signature() {
        let key = RsaPublicKey::from_pem(TV2_PUBLIC).unwrap();
        let body = br#"{"createdTime":"2020-01-01T00:00:00+07:00","latestTransactionStatus":"00","originalReferenceNo":"gopayOrderId","finishedTime":"2020-01-02T00:00:00+07:00","originalPartnerReferenceNo":"merchant-order-id","transactionStatusDesc":"desc","originalExternalId":"merchant-order-id","additionalInfo":{"payOptionDetails":[{"payMethod":"GOPAY","payOption":"GOPAY_WALLET"}],"fraudStatus":"accept","refundHistory":[{"refundNo":"96194816941239812","partnerReferenceNo":"239850918204981205970","refundAmount":{"value":"12345678.00","currency":"IDR"},"refundStatus":"00","refundDate":"2020-12-23T07:44:16+07:00","reason":"Customer Complain"}],"validUpTo":"2021-01-01T00:00:00+07:00"}}"#;
        assert_eq!(
            body_hash(body),
            "2ea1a3719499a0c45630f774b241a26a03d954fd8ab4a4d35cce05b5e37e4293"
        );
        let s = format!(
            "POST:/v1.0/debit/notify:{}:2024-03-05T10:37:16.196Z",
            body_hash(body)
        );
        let sig = "eUGsomFLNsjWzehgGsa317MqcVOgscay/Hml8yNmOsFhmoBM7pso+UPDgSe34anXvecSQkf5NOr0fbr8k9qdyyoWiYX7DTq/Wnz8XC0cRCCbNZfyLIyF33HO9cnvxOcRQq9DuWlQtld+uEluuivVdN2TiaWLpUTmfB/H7noZnXWWDj6FYa4n5kSo4o3aTeFYAF9EmLp0Tcsl8CiHSQCrQnIbB8M2+puLwyJ1l2OocvZ5qgjf5f2DqlCbemsSMzYzjN+YMrb0kiDx0TiW5UTk+WZass43xIfb3vdrlX+U2JSk5YsJ8lFpp9F+7FId4cyncElNFEbt3zWuP4iDzXteCg==";
        assert!(key.verify(s.as_bytes(), sig));
    }

    #[test]
    fn tv4_to_tv6_our_reading() {
        let mac = Hmac512::new(b"myclientsecret");
        // Two spaces inside strings survive minify.
        let body = br#"{"partnerServiceId":"  088899","customerNo":"12345678901234567890","virtualAccountNo":"  08889912345678901234567890","inquiryRequestId":"abcdef-123456-abcdef"}"#;
        assert_eq!(
            body_hash(body),
            "1cb970603fcbe2772a58eb0a91e47b2bcef115cce8b32e929cab35a0a8d5363c"
        );
        let s = string_to_sign(
            "POST",
            "/v1.0/transfer-va/inquiry",
            "myaccesstoken",
            body,
            "2020-12-21T14:56:11+07:00",
        );
        assert_eq!(
            mac.sign(&s),
            "QxK5EKCPNnw9iAFxMv0yY15el6mZM4oQWApG/zqD727k1+H+cqxdq6uSrvfGaUvME0cuaXiAamb/4ZhpfUSURA=="
        );
        let s = string_to_sign(
            "GET",
            "/v1.0/transfer-va/report?endDate=2021-12-31&partnerServiceId=%20%20088899&startDate=2020-12-31",
            "myaccesstoken",
            b"",
            "2020-12-21T14:56:11+07:00",
        );
        assert_eq!(
            mac.sign(&s),
            "SU+vF89Fq8ffgHNkONeXOJ/gRJ9wmBnT1+P69jS0FL4ke0WTPZ4UVJ0fjzp3CdZveex8BvLRWkACSQjEdMMXWg=="
        );
        assert_eq!(
            body_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn minify_keeps_strings_and_escapes() {
        assert_eq!(
            minify(br#" { "a b" : "c \" d\\" , "e":[1, 2] } "#),
            br#"{"a b":"c \" d\\","e":[1,2]}"#.to_vec()
        );
        assert_eq!(minify(b"not json at all"), b"notjsonatall".to_vec());
    }

    #[test]
    fn keys_that_are_not_rsa_public_keys_are_refused() {
        assert!(RsaPublicKey::from_pem("nothing").is_err());
        assert!(RsaPublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----"
        )
        .is_err());
        assert!(RsaPublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----"
        )
        .is_err());
        assert!(RsaPublicKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----"
        )
        .is_err());
    }
}
