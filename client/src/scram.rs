//! SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka's KIP-84 use them):
//! the key derivation shared by the broker and `samsa user add`, the credential the broker
//! stores, the server side of the three-message exchange (the broker's) and the client
//! side (tests, and the client's SASL later).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// A SCRAM hash, with Kafka's mechanism codes (AlterUserScramCredentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (code 1).
    Sha256,
    /// SCRAM-SHA-512 (code 2).
    Sha512,
}

/// Kafka's smallest and largest accepted iteration counts.
pub const MIN_ITERATIONS: i32 = 4096;
/// See [`MIN_ITERATIONS`].
pub const MAX_ITERATIONS: i32 = 16384;

impl Mechanism {
    /// From the SASL name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// From Kafka's code (1, 2).
    pub fn from_code(code: i8) -> Option<Mechanism> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i): PBKDF2 with this HMAC, one block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&[0, 0, 0, 1]);
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations.max(1) {
            u = self.hmac(password, &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

/// What the server stores for one user and mechanism (never the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The salt.
    pub salt: Vec<u8>,
    /// Iterations of Hi.
    pub iterations: i32,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted(m: Mechanism, salt: &[u8], iterations: i32, salted_password: &[u8]) -> Credential {
        let client_key = m.hmac(salted_password, b"Client Key");
        Credential { salt: salt.to_vec(), iterations, stored_key: m.hash(&client_key), server_key: m.hmac(salted_password, b"Server Key") }
    }

    /// Whether `password` is this credential's (for SASL/PLAIN), in constant time over the keys.
    pub fn matches(&self, m: Mechanism, password: &str) -> bool {
        let salted = m.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let c = Credential::from_salted(m, &self.salt, self.iterations, &salted);
        constant_eq(&c.stored_key, &self.stored_key)
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes from the OS (via UUIDv4's generator).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

/// Where a server-side exchange stands.
#[derive(Debug)]
pub enum Exchange {
    /// Sent the server-first message; waiting for the client's final one.
    First {
        /// The user.
        user: String,
        /// The credential it is checked against.
        credential: Credential,
        /// client-first-message-bare + "," + server-first-message.
        auth_prefix: String,
        /// The combined nonce.
        nonce: String,
        /// The GS2 header the client sent (its `c=` must encode it).
        gs2_header: String,
    },
}

/// Decodes a SCRAM `saslname` (`=2C` is `,`, `=3D` is `=`).
fn sasl_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The user named in a client-first message, or why it is malformed.
pub fn client_first_user(msg: &str) -> Result<(String, String, String, String), String> {
    // gs2-header: ("n" | "y" | "p=...") "," [ "a=" authzid ] ","
    let mut parts = msg.splitn(3, ',');
    let (cbind, authz, bare) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().ok_or("not a SCRAM client-first message")?);
    if cbind.starts_with('p') {
        return Err("channel binding is not supported".into());
    }
    if !matches!(cbind, "n" | "y") {
        return Err("not a SCRAM client-first message".into());
    }
    let mut user = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            user = sasl_name(v);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            return Err("mandatory SCRAM extensions are not supported".into());
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or("no user name in the SCRAM client-first message")?;
    let nonce = nonce.filter(|n| !n.is_empty()).ok_or("no nonce in the SCRAM client-first message")?;
    if let Some(a) = authz.strip_prefix("a=") {
        if sasl_name(a).as_deref() != Some(user.as_str()) {
            return Err("an authorization id other than the user is not supported".into());
        }
    }
    Ok((user, nonce, format!("{cbind},{authz},"), bare.to_string()))
}

/// Starts an exchange for a parsed client-first message: the server-first message.
pub fn server_first(credential: Credential, user: String, client_nonce: &str, gs2_header: String, client_first_bare: &str, server_nonce: &str) -> (String, Exchange) {
    let nonce = format!("{client_nonce}{server_nonce}");
    let first = format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
    let auth_prefix = format!("{client_first_bare},{first}");
    (first, Exchange::First { user, credential, auth_prefix, nonce, gs2_header })
}

/// Checks the client-final message: the server-final message and the user, or why not.
pub fn server_final(m: Mechanism, ex: Exchange, client_final: &str) -> Result<(String, String), String> {
    let Exchange::First { user, credential, auth_prefix, nonce, gs2_header } = ex;
    let (without_proof, proof) = client_final.rsplit_once(",p=").ok_or("no proof in the SCRAM client-final message")?;
    let mut channel = None;
    let mut got_nonce = None;
    for attr in without_proof.split(',') {
        if let Some(v) = attr.strip_prefix("c=") {
            channel = Some(v);
        } else if let Some(v) = attr.strip_prefix("r=") {
            got_nonce = Some(v);
        }
    }
    if channel.and_then(|c| B64.decode(c).ok()).as_deref() != Some(gs2_header.as_bytes()) {
        return Err("the SCRAM channel binding does not match the client-first message".into());
    }
    // Kafka's server takes a final nonce that ends with the combined one (some librdkafka
    // versions send the client nonce twice); the proof covers the message either way.
    if !got_nonce.is_some_and(|n| n.ends_with(nonce.as_str())) {
        return Err("the SCRAM nonce does not match".into());
    }
    let proof = B64.decode(proof).map_err(|_| "the SCRAM proof is not base64")?;
    let auth = format!("{auth_prefix},{without_proof}");
    let signature = m.hmac(&credential.stored_key, auth.as_bytes());
    if proof.len() != signature.len() {
        return Err("invalid credentials".into());
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    if !constant_eq(&m.hash(&client_key), &credential.stored_key) {
        return Err("invalid credentials".into());
    }
    let verifier = m.hmac(&credential.server_key, auth.as_bytes());
    Ok((format!("v={}", B64.encode(verifier)), user))
}

/// The client side of an exchange, for tests and for Samsa's own client.
pub mod client {
    use super::*;

    /// The client-final message and the expected server signature, for a server-first
    /// message answering `client_first_bare`.
    pub fn final_message(m: Mechanism, password: &str, client_first_bare: &str, server_first: &str) -> Result<(String, Vec<u8>), String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse::<i32>().ok();
            }
        }
        let (nonce, salt, iterations) = (nonce.ok_or("no nonce")?, salt.ok_or("no salt")?, iterations.ok_or("no iteration count")?);
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!("the server asks for {iterations} SCRAM iterations; {MIN_ITERATIONS} to {MAX_ITERATIONS} are accepted"));
        }
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = m.hmac(&salted, b"Server Key");
        Ok((format!("{without_proof},p={}", B64.encode(proof)), m.hmac(&server_key, auth.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, end to end on the server side.
    #[test]
    fn rfc_7677_example_verifies() {
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::from_salted(m, &salt, 4096, &m.salted_password(b"pencil", &salt, 4096));
        let (user, cnonce, gs2, bare) = client_first_user("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!((user.as_str(), gs2.as_str()), ("user", "n,,"));
        let (first, ex) = server_first(cred.clone(), user, &cnonce, gs2, &bare, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(first, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let (last, who) = server_final(m, ex, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        assert_eq!((last.as_str(), who.as_str()), ("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "user"));
        assert!(cred.matches(m, "pencil") && !cred.matches(m, "pencil2"));
    }

    #[test]
    fn a_wrong_password_or_a_tampered_message_fails() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let salt = random_bytes(16);
            let cred = Credential::from_salted(m, &salt, 4096, &m.salted_password(b"secret", &salt, 4096));
            let run = |password: &str, tamper: fn(String) -> String| {
                let (user, cnonce, gs2, bare) = client_first_user("n,,n=al=2Cice,r=abc").unwrap();
                assert_eq!(user, "al,ice");
                let (first, ex) = server_first(cred.clone(), user, &cnonce, gs2, &bare, "xyz");
                let (fin, want) = client::final_message(m, password, &bare, &first).unwrap();
                server_final(m, ex, &tamper(fin)).map(|(v, _)| (v, want))
            };
            let (v, want) = run("secret", |s| s).unwrap();
            assert_eq!(v, format!("v={}", B64.encode(want)));
            assert_eq!(run("wrong", |s| s).unwrap_err(), "invalid credentials");
            assert!(run("secret", |s| s.replace("r=abcxyz", "r=abcxyq")).unwrap_err().contains("nonce"));
            // As Kafka does, a nonce that ends with the combined one passes (librdkafka 2.0
            // repeats the client nonce); the proof still has to match.
            assert_eq!(run("secret", |s| s.replace("r=abcxyz", "r=abcabcxyz")).unwrap_err(), "invalid credentials");
            assert!(run("secret", |s| s.replace("c=biws", "c=eSws")).unwrap_err().contains("channel binding"));
        }
        assert!(client_first_user("p=tls-unique,,n=u,r=1").unwrap_err().contains("channel binding"));
        assert!(client_first_user("n,,r=1").unwrap_err().contains("user"));
        assert!(client_first_user("garbage").is_err());
        assert!(client_first_user("n,,n=a=ZZ,r=1").is_err());
    }
}
