//! SCRAM users: AlterUserScramCredentials (the salted password is computed here; the
//! password never leaves the client) and DescribeUserScramCredentials.

use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};

use super::{check, Admin};
use crate::error::{Error, Result};
use crate::net::cluster::sb;
use crate::scram::{random_bytes, Mechanism};

/// A SCRAM user as DescribeUserScramCredentials shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// User name.
    pub name: String,
    /// Its mechanisms with their iteration counts.
    pub mechanisms: Vec<(Mechanism, i32)>,
}

impl Admin {
    /// Sets `user`'s password for `mechanism` (a new random salt, `iterations` of Hi).
    pub async fn upsert_scram_user(&self, user: &str, mechanism: Mechanism, password: &str, iterations: i32) -> Result<()> {
        let salt = random_bytes(32);
        let mut u = ScramCredentialUpsertion::default();
        u.name = sb(user);
        u.mechanism = mechanism.code();
        u.iterations = iterations;
        u.salted_password = mechanism.salted_password(password.as_bytes(), &salt, iterations).into();
        u.salt = salt.into();
        let mut req = AlterUserScramCredentialsRequest::default();
        req.upsertions.push(u);
        self.alter_scram(user, req, format!("set the {} password of user `{user}`", mechanism.name())).await
    }

    /// Removes `user`'s credential for `mechanism`.
    pub async fn delete_scram_user(&self, user: &str, mechanism: Mechanism) -> Result<()> {
        let mut d = ScramCredentialDeletion::default();
        d.name = sb(user);
        d.mechanism = mechanism.code();
        let mut req = AlterUserScramCredentialsRequest::default();
        req.deletions.push(d);
        self.alter_scram(user, req, format!("delete the {} credential of user `{user}`", mechanism.name())).await
    }

    async fn alter_scram(&self, user: &str, req: AlterUserScramCredentialsRequest, what: String) -> Result<()> {
        let conn = self.cluster.any().await?;
        let version = conn.version::<AlterUserScramCredentialsRequest>(0, 0)?;
        let resp = conn.send(&req, version).await?;
        let r = resp
            .results
            .iter()
            .find(|r| r.user.as_str() == user)
            .ok_or_else(|| Error::Protocol { addr: conn.addr().to_string(), reason: format!("AlterUserScramCredentials response has no result for `{user}`") })?;
        check(r.error_code, r.error_message.as_ref(), || what)
    }

    /// The SCRAM users (all when `users` is empty); an unknown named user is an error
    /// (RESOURCE_NOT_FOUND).
    pub async fn describe_scram_users(&self, users: &[String]) -> Result<Vec<ScramUser>> {
        let conn = self.cluster.any().await?;
        let version = conn.version::<DescribeUserScramCredentialsRequest>(0, 0)?;
        let mut req = DescribeUserScramCredentialsRequest::default();
        req.users = (!users.is_empty()).then(|| {
            users
                .iter()
                .map(|u| {
                    let mut n = UserName::default();
                    n.name = sb(u.as_str());
                    n
                })
                .collect()
        });
        let resp = conn.send(&req, version).await?;
        check(resp.error_code, resp.error_message.as_ref(), || "describe SCRAM users".into())?;
        let mut out = Vec::new();
        for r in resp.results {
            let name = r.user.to_string();
            check(r.error_code, r.error_message.as_ref(), || format!("describe user `{name}`"))?;
            out.push(ScramUser { mechanisms: r.credential_infos.iter().filter_map(|i| Mechanism::from_code(i.mechanism).map(|m| (m, i.iterations))).collect(), name });
        }
        Ok(out)
    }
}
