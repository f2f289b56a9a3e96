//! ACLs: CreateAcls, DescribeAcls and DeleteAcls (any broker; the quorum stores them).

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};

use super::{check, Admin};
use crate::acl::{AclBinding, AclFilter, Operation, PatternType, ResourceType};
use crate::error::Result;
use crate::net::cluster::sb;

/// ACL API versions (v1 has pattern types).
const ACLS: (i16, i16) = (1, 3);

fn from_wire(rt: i8, name: &str, pattern: i8, principal: &str, host: &str, op: i8, permission: i8) -> Option<AclBinding> {
    Some(AclBinding {
        resource_type: ResourceType::from_code(rt)?,
        name: name.to_string(),
        pattern: PatternType::from_code(pattern)?,
        principal: principal.to_string(),
        host: host.to_string(),
        operation: Operation::from_code(op)?,
        allow: permission == 3,
    })
}

/// A filter's wire codes: (resource type, pattern type, operation, permission); 1 is ANY,
/// pattern 2 is MATCH.
fn codes(f: &AclFilter) -> (i8, i8, i8, i8) {
    (
        f.resource_type.map_or(1, ResourceType::code),
        if f.matching { 2 } else { f.pattern.map_or(1, PatternType::code) },
        f.operation.map_or(1, Operation::code),
        f.allow.map_or(1, |a| if a { 3 } else { 2 }),
    )
}

impl Admin {
    /// Creates ACL bindings; the first refused one is the error.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<()> {
        let conn = self.cluster.any().await?;
        let version = conn.version::<CreateAclsRequest>(ACLS.0, ACLS.1)?;
        let mut req = CreateAclsRequest::default();
        req.creations = acls
            .iter()
            .map(|b| {
                let mut c = AclCreation::default();
                c.resource_type = b.resource_type.code();
                c.resource_name = sb(b.name.as_str());
                c.resource_pattern_type = b.pattern.code();
                c.principal = sb(b.principal.as_str());
                c.host = sb(b.host.as_str());
                c.operation = b.operation.code();
                c.permission_type = if b.allow { 3 } else { 2 };
                c
            })
            .collect();
        let resp = conn.send(&req, version).await?;
        for (b, r) in acls.iter().zip(&resp.results) {
            check(r.error_code, r.error_message.as_ref(), || format!("create ACL {b}"))?;
        }
        Ok(())
    }

    /// The ACL bindings a filter selects.
    pub async fn describe_acls(&self, f: &AclFilter) -> Result<Vec<AclBinding>> {
        let conn = self.cluster.any().await?;
        let version = conn.version::<DescribeAclsRequest>(ACLS.0, ACLS.1)?;
        let (rt, pattern, op, permission) = codes(f);
        let mut req = DescribeAclsRequest::default();
        req.resource_type_filter = rt;
        req.resource_name_filter = f.name.as_deref().map(sb);
        req.pattern_type_filter = pattern;
        req.principal_filter = f.principal.as_deref().map(sb);
        req.host_filter = f.host.as_deref().map(sb);
        req.operation = op;
        req.permission_type = permission;
        let resp = conn.send(&req, version).await?;
        check(resp.error_code, resp.error_message.as_ref(), || "describe ACLs".into())?;
        Ok(resp
            .resources
            .iter()
            .flat_map(|r| r.acls.iter().filter_map(move |a| from_wire(r.resource_type, &r.resource_name, r.pattern_type, &a.principal, &a.host, a.operation, a.permission_type)))
            .collect())
    }

    /// Deletes the ACL bindings a filter selects; the ones deleted.
    pub async fn delete_acls(&self, f: &AclFilter) -> Result<Vec<AclBinding>> {
        let conn = self.cluster.any().await?;
        let version = conn.version::<DeleteAclsRequest>(ACLS.0, ACLS.1)?;
        let (rt, pattern, op, permission) = codes(f);
        let mut d = DeleteAclsFilter::default();
        d.resource_type_filter = rt;
        d.resource_name_filter = f.name.as_deref().map(sb);
        d.pattern_type_filter = pattern;
        d.principal_filter = f.principal.as_deref().map(sb);
        d.host_filter = f.host.as_deref().map(sb);
        d.operation = op;
        d.permission_type = permission;
        let mut req = DeleteAclsRequest::default();
        req.filters.push(d);
        let resp = conn.send(&req, version).await?;
        let mut out = Vec::new();
        for r in &resp.filter_results {
            check(r.error_code, r.error_message.as_ref(), || "delete ACLs".into())?;
            out.extend(r.matching_acls.iter().filter_map(|m| from_wire(m.resource_type, &m.resource_name, m.pattern_type, &m.principal, &m.host, m.operation, m.permission_type)));
        }
        Ok(out)
    }
}
