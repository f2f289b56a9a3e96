//! AlterUserScramCredentials and DescribeUserScramCredentials: SCRAM users in the
//! metadata quorum. A client sends the salted password (never the password); the broker
//! stores only the derived keys.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::sb;
use crate::meta::Command;
use crate::security::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::server::BrokerState;

fn result(user: &str, e: Option<(ResponseError, String)>) -> AlterUserScramCredentialsResult {
    let mut r = AlterUserScramCredentialsResult::default();
    r.user = sb(user);
    if let Some((code, message)) = e {
        r.error_code = code.code();
        r.error_message = Some(sb(message));
    }
    r
}

/// A refusal: the error code and why.
type Refusal = (ResponseError, String);

/// The command for one deletion or upsertion, or why it is refused.
fn check(user: &str, mechanism: i8, upsert: Option<(i32, &[u8], &[u8])>) -> Result<Command, Refusal> {
    if user.is_empty() {
        return Err((ResponseError::UnacceptableCredential, "the user name is empty".into()));
    }
    let m =
        Mechanism::from_code(mechanism).ok_or((ResponseError::UnsupportedSaslMechanism, format!("unknown SCRAM mechanism {mechanism} (1: SCRAM-SHA-256, 2: SCRAM-SHA-512)")))?;
    let Some((iterations, salt, salted)) = upsert else { return Ok(Command::DeleteScram { user: user.into(), mechanism: m }) };
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err((ResponseError::UnacceptableCredential, format!("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, got {iterations}")));
    }
    if salt.is_empty() || salted.is_empty() {
        return Err((ResponseError::UnacceptableCredential, "the salt and the salted password must not be empty".into()));
    }
    Ok(Command::UpsertScram { user: user.into(), mechanism: m, credential: Credential::from_salted(m, salt, iterations, salted) })
}

/// Handles AlterUserScramCredentials: one result per user; a user named twice is refused.
pub async fn alter(state: &BrokerState, req: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let mut resp = AlterUserScramCredentialsResponse::default();
    let mut seen = BTreeSet::new();
    let mut twice = BTreeSet::new();
    let names = req.deletions.iter().map(|d| (d.name.to_string(), d.mechanism)).chain(req.upsertions.iter().map(|u| (u.name.to_string(), u.mechanism)));
    for key in names {
        if !seen.insert(key.clone()) {
            twice.insert(key.0);
        }
    }
    let mut users: Vec<(String, Result<Command, Refusal>)> = Vec::new();
    for d in &req.deletions {
        users.push((d.name.to_string(), check(&d.name, d.mechanism, None)));
    }
    for u in &req.upsertions {
        users.push((u.name.to_string(), check(&u.name, u.mechanism, Some((u.iterations, &u.salt, &u.salted_password)))));
    }
    let mut done = BTreeSet::new();
    for (user, cmd) in users {
        if twice.contains(&user) {
            if done.insert(user.clone()) {
                resp.results.push(result(&user, Some((ResponseError::DuplicateResource, format!("user {user} is named more than once for one mechanism")))));
            }
            continue;
        }
        let outcome = match cmd {
            Err(e) => Some(e),
            Ok(cmd) => state.controller.propose(cmd).await.err().map(|e| (e.code, e.message)),
        };
        // One result per user: the first failure, else success.
        match resp.results.iter_mut().find(|r| r.user.as_str() == user) {
            Some(r) if r.error_code == 0 => {
                if let Some((code, message)) = outcome {
                    r.error_code = code.code();
                    r.error_message = Some(sb(message));
                }
            }
            Some(_) => {}
            None => resp.results.push(result(&user, outcome)),
        }
    }
    resp
}

/// Handles DescribeUserScramCredentials: each user's mechanisms and iterations (never keys).
pub fn describe(state: &BrokerState, req: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let image = state.image();
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let users: Vec<String> = match &req.users {
        Some(list) if !list.is_empty() => list.iter().map(|u| u.name.to_string()).collect(),
        _ => image.scram.keys().cloned().collect(),
    };
    for user in users {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = sb(user.clone());
        match image.scram.get(&user) {
            Some(creds) => {
                r.credential_infos = creds
                    .iter()
                    .map(|(m, c)| {
                        let mut i = CredentialInfo::default();
                        i.mechanism = m.code();
                        i.iterations = c.iterations;
                        i
                    })
                    .collect();
            }
            None => {
                r.error_code = ResponseError::ResourceNotFound.code();
                r.error_message = Some(sb(format!("Attempt to describe a user credential that does not exist: {user}")));
            }
        }
        resp.results.push(r);
    }
    resp
}
