//! One connection's SASL exchange (SaslHandshake v1, then SaslAuthenticate): PLAIN and
//! SCRAM-SHA-256/512, checked against the SCRAM credentials in the metadata image. PLAIN
//! checks the password against the user's stored SCRAM keys, so one `samsa user add`
//! serves both.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kafka_protocol::ResponseError;

use super::scram::{self, Exchange, Mechanism};
use crate::meta::image::Image;

/// What a SaslAuthenticate round did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes; the client answers with another SaslAuthenticate.
    Continue(Vec<u8>),
    /// Authenticated as this principal; send these (final) bytes.
    Done(Vec<u8>, String),
    /// Failed: send SASL_AUTHENTICATION_FAILED with this message and close.
    Failed(String),
}

/// Where one connection's SASL exchange stands.
#[derive(Debug, Default)]
pub struct Session {
    /// Set by a SaslHandshake v0: the tokens come as bare frames (no request header).
    pub raw: bool,
    mechanism: Option<String>,
    scram: Option<(Mechanism, Exchange)>,
    principal: Option<String>,
}

fn invalid(mechanism: &str) -> String {
    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}")
}

impl Session {
    /// Whether a SaslHandshake chose a mechanism.
    pub fn handshaken(&self) -> bool {
        self.mechanism.is_some()
    }

    /// The authenticated principal (`User:NAME`), once done.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// SaslHandshake: chooses `mechanism` if enabled.
    pub fn handshake(&mut self, mechanism: &str, enabled: &[String]) -> Result<(), ResponseError> {
        if self.mechanism.is_some() || self.principal.is_some() {
            return Err(ResponseError::IllegalSaslState);
        }
        if !enabled.iter().any(|m| m == mechanism) {
            return Err(ResponseError::UnsupportedSaslMechanism);
        }
        self.mechanism = Some(mechanism.to_string());
        Ok(())
    }

    /// SaslAuthenticate: one round of the chosen mechanism.
    pub fn authenticate(&mut self, image: &Image, bytes: &[u8]) -> Step {
        let Some(mechanism) = self.mechanism.clone() else {
            return Step::Failed("SaslAuthenticate before SaslHandshake".into());
        };
        if self.principal.is_some() {
            return Step::Failed("already authenticated".into());
        }
        let Ok(text) = std::str::from_utf8(bytes) else { return Step::Failed(format!("the {mechanism} message is not UTF-8")) };
        if mechanism == "PLAIN" {
            let mut parts = text.split('\0');
            let (authz, user, password) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(u), Some(p), None) => (a, u, p),
                _ => return Step::Failed("a SASL/PLAIN message is authzid NUL user NUL password".into()),
            };
            if !authz.is_empty() && authz != user {
                return Step::Failed("an authorization id other than the user is not supported".into());
            }
            let ok = image.scram.get(user).is_some_and(|creds| creds.iter().any(|(m, c)| c.matches(*m, password)));
            if !ok {
                return Step::Failed(invalid("PLAIN"));
            }
            self.principal = Some(format!("User:{user}"));
            return Step::Done(Vec::new(), format!("User:{user}"));
        }
        let Some(m) = Mechanism::from_name(&mechanism) else { return Step::Failed(format!("{mechanism} is not supported")) };
        match self.scram.take() {
            None => {
                let (user, cnonce, gs2, bare) = match scram::client_first_user(text) {
                    Ok(p) => p,
                    Err(e) => return Step::Failed(format!("{mechanism}: {e}")),
                };
                let Some(cred) = image.scram.get(&user).and_then(|c| c.get(&m)).cloned() else { return Step::Failed(invalid(&mechanism)) };
                let snonce = B64.encode(scram::random_bytes(18));
                let (first, ex) = scram::server_first(cred, user, &cnonce, gs2, &bare, &snonce);
                self.scram = Some((m, ex));
                Step::Continue(first.into_bytes())
            }
            Some((m, ex)) => match scram::server_final(m, ex, text) {
                Ok((last, user)) => {
                    self.principal = Some(format!("User:{user}"));
                    Step::Done(last.into_bytes(), format!("User:{user}"))
                }
                Err(e) if e == "invalid credentials" => Step::Failed(invalid(&mechanism)),
                Err(e) => Step::Failed(format!("{mechanism}: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::Credential;

    fn image_with(user: &str, password: &str) -> Image {
        let mut img = Image::default();
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let salt = scram::random_bytes(16);
            let cred = Credential::from_salted(m, &salt, 4096, &m.salted_password(password.as_bytes(), &salt, 4096));
            img.scram.entry(user.into()).or_default().insert(m, cred);
        }
        img
    }

    #[test]
    fn plain_and_scram_authenticate_known_users_only() {
        let img = image_with("alice", "s3cret");
        let all: Vec<String> = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].map(String::from).to_vec();
        let mut s = Session::default();
        assert_eq!(s.handshake("GSSAPI", &all), Err(ResponseError::UnsupportedSaslMechanism));
        s.handshake("PLAIN", &all).unwrap();
        assert_eq!(s.authenticate(&img, b"\0alice\0s3cret"), Step::Done(Vec::new(), "User:alice".into()));
        assert_eq!(s.principal(), Some("User:alice"));
        let mut s = Session::default();
        s.handshake("PLAIN", &all).unwrap();
        assert_eq!(s.authenticate(&img, b"\0alice\0wrong"), Step::Failed(invalid("PLAIN")));
        for (mech, m) in [("SCRAM-SHA-256", Mechanism::Sha256), ("SCRAM-SHA-512", Mechanism::Sha512)] {
            for (user, password, ok) in [("alice", "s3cret", true), ("alice", "nope", false), ("bob", "s3cret", false)] {
                let mut s = Session::default();
                s.handshake(mech, &all).unwrap();
                let bare = format!("n={user},r=clientnonce");
                let first = match s.authenticate(&img, format!("n,,{bare}").as_bytes()) {
                    Step::Continue(b) => String::from_utf8(b).unwrap(),
                    Step::Failed(e) => {
                        assert!(!ok && user == "bob" && e == invalid(mech), "{e}");
                        continue;
                    }
                    other => panic!("{other:?}"),
                };
                let (fin, want) = scram::client::final_message(m, password, &bare, &first).unwrap();
                match s.authenticate(&img, fin.as_bytes()) {
                    Step::Done(v, who) => {
                        assert!(ok);
                        assert_eq!((String::from_utf8(v).unwrap(), who), (format!("v={}", B64.encode(want)), "User:alice".to_string()));
                    }
                    Step::Failed(e) => assert!(!ok && e == invalid(mech), "{e}"),
                    other => panic!("{other:?}"),
                }
            }
        }
        let mut s = Session::default();
        assert!(matches!(s.authenticate(&img, b"x"), Step::Failed(_)));
        s.handshake("SCRAM-SHA-256", &all).unwrap();
        assert_eq!(s.handshake("PLAIN", &all), Err(ResponseError::IllegalSaslState));
        assert!(matches!(s.authenticate(&img, &[0xff, 0xfe]), Step::Failed(_)));
    }
}
