//! CreateAcls, DescribeAcls and DeleteAcls: ACL bindings in the metadata quorum.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::sb;
use crate::meta::Command;
use crate::security::acl::{AclBinding, AclFilter, Operation, PatternType, ResourceType, CLUSTER};
use crate::server::BrokerState;

type Refusal = (ResponseError, String);

fn invalid(why: impl Into<String>) -> Refusal {
    (ResponseError::InvalidRequest, why.into())
}

/// A binding from a CreateAcls creation, or why it is refused.
fn binding(c: &create_acls_request::AclCreation) -> Result<AclBinding, Refusal> {
    let rt = ResourceType::from_code(c.resource_type).ok_or_else(|| invalid(format!("resource type {} is not Topic, Group, Cluster or TransactionalId", c.resource_type)))?;
    let pattern = PatternType::from_code(c.resource_pattern_type).ok_or_else(|| invalid("the pattern type must be LITERAL or PREFIXED"))?;
    let operation = Operation::from_code(c.operation).ok_or_else(|| invalid(format!("operation {} is not one Samsa knows", c.operation)))?;
    let allow = match c.permission_type {
        3 => true,
        2 => false,
        other => return Err(invalid(format!("permission type {other} is not ALLOW or DENY"))),
    };
    let principal = c.principal.to_string();
    if !principal.starts_with("User:") || principal.len() <= 5 {
        return Err(invalid(format!("principal `{principal}` must look like User:NAME or User:*")));
    }
    let name = c.resource_name.to_string();
    if name.is_empty() {
        return Err(invalid("the resource name is empty"));
    }
    if rt == ResourceType::Cluster && name != CLUSTER {
        return Err(invalid(format!("the cluster resource is named {CLUSTER}")));
    }
    let host = if c.host.is_empty() { "*".to_string() } else { c.host.to_string() };
    Ok(AclBinding { resource_type: rt, name, pattern, principal, host, operation, allow })
}

/// Handles CreateAcls: one result per creation, in order.
pub async fn create(state: &BrokerState, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    let parsed: Vec<Result<AclBinding, Refusal>> = req.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|b| b.as_ref().ok().cloned()).collect();
    let applied = if valid.is_empty() { Ok(()) } else { state.controller.propose(Command::CreateAcls { acls: valid }).await.map(|_| ()).map_err(|e| (e.code, e.message)) };
    for b in parsed {
        let mut r = AclCreationResult::default();
        if let Some((code, message)) = b.err().or_else(|| applied.clone().err()) {
            r.error_code = code.code();
            r.error_message = Some(sb(message));
        }
        resp.results.push(r);
    }
    resp
}

/// [`filter`] of a DescribeAcls request or a DeleteAcls filter (the same seven fields).
macro_rules! filter_of {
    ($f:expr) => {
        filter(
            $f.resource_type_filter,
            $f.resource_name_filter.as_deref(),
            $f.pattern_type_filter,
            $f.principal_filter.as_deref(),
            $f.host_filter.as_deref(),
            $f.operation,
            $f.permission_type,
        )
    };
}

/// A filter from DescribeAcls/DeleteAcls fields.
#[allow(clippy::too_many_arguments)]
fn filter(resource_type: i8, name: Option<&str>, pattern: i8, principal: Option<&str>, host: Option<&str>, operation: i8, permission: i8) -> Result<AclFilter, Refusal> {
    Ok(AclFilter {
        resource_type: match resource_type {
            1 => None,
            t => Some(ResourceType::from_code(t).ok_or_else(|| invalid(format!("resource type filter {t} is not ANY, Topic, Group, Cluster or TransactionalId")))?),
        },
        name: name.map(str::to_string),
        pattern: match pattern {
            1 | 2 => None,
            p => Some(PatternType::from_code(p).ok_or_else(|| invalid(format!("pattern type filter {p} is not ANY, MATCH, LITERAL or PREFIXED")))?),
        },
        matching: pattern == 2,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: match operation {
            1 => None,
            o => Some(Operation::from_code(o).ok_or_else(|| invalid(format!("operation filter {o} is not one Samsa knows")))?),
        },
        allow: match permission {
            1 => None,
            3 => Some(true),
            2 => Some(false),
            p => return Err(invalid(format!("permission filter {p} is not ANY, ALLOW or DENY"))),
        },
    })
}

/// Handles DescribeAcls: the matching bindings grouped by resource pattern.
pub fn describe(state: &BrokerState, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    let f = match filter_of!(req) {
        Ok(f) => f,
        Err((code, message)) => {
            resp.error_code = code.code();
            resp.error_message = Some(sb(message));
            return resp;
        }
    };
    let image = state.image();
    for b in image.acls.iter().filter(|b| f.selects(b)) {
        let same = |r: &DescribeAclsResource| r.resource_type == b.resource_type.code() && r.resource_name.as_str() == b.name && r.pattern_type == b.pattern.code();
        if !resp.resources.iter().any(same) {
            let mut r = DescribeAclsResource::default();
            r.resource_type = b.resource_type.code();
            r.resource_name = sb(b.name.clone());
            r.pattern_type = b.pattern.code();
            resp.resources.push(r);
        }
        let r = resp.resources.iter_mut().find(|r| same(r)).expect("just added");
        let mut d = AclDescription::default();
        d.principal = sb(b.principal.clone());
        d.host = sb(b.host.clone());
        d.operation = b.operation.code();
        d.permission_type = if b.allow { 3 } else { 2 };
        r.acls.push(d);
    }
    resp
}

/// Handles DeleteAcls: each filter's matching bindings are removed and listed.
pub async fn delete(state: &BrokerState, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    let image = state.image();
    let mut all = Vec::new();
    let mut per_filter = Vec::new();
    for f in &req.filters {
        let parsed = filter_of!(f);
        let matched: Vec<AclBinding> = match &parsed {
            Ok(f) => image.acls.iter().filter(|b| f.selects(b)).cloned().collect(),
            Err(_) => Vec::new(),
        };
        all.extend(matched.iter().cloned());
        per_filter.push((parsed.err(), matched));
    }
    let applied = if all.is_empty() { Ok(()) } else { state.controller.propose(Command::DeleteAcls { acls: all }).await.map(|_| ()).map_err(|e| (e.code, e.message)) };
    for (error, matched) in per_filter {
        let mut r = DeleteAclsFilterResult::default();
        if let Some((code, message)) = error.or_else(|| applied.clone().err()) {
            r.error_code = code.code();
            r.error_message = Some(sb(message));
        } else {
            r.matching_acls = matched
                .into_iter()
                .map(|b| {
                    let mut m = DeleteAclsMatchingAcl::default();
                    m.resource_type = b.resource_type.code();
                    m.resource_name = sb(b.name);
                    m.pattern_type = b.pattern.code();
                    m.principal = sb(b.principal);
                    m.host = sb(b.host);
                    m.operation = b.operation.code();
                    m.permission_type = if b.allow { 3 } else { 2 };
                    m
                })
                .collect();
        }
        resp.filter_results.push(r);
    }
    resp
}
