//! ACLs as Kafka has them (KIP-290 patterns), shared by the broker's authorizer and the
//! client's admin calls: bindings of a resource pattern (type, name,
//! literal or prefixed) to an entry (principal, host, operation, allow or deny), the filters
//! of DescribeAcls/DeleteAcls, and the authorizer's rule: super users may do anything; a
//! matching DENY wins; else a matching ALLOW (Read, Write, Delete or Alter also allow
//! Describe; AlterConfigs allows DescribeConfigs); else denied.

use serde::{Deserialize, Serialize};

/// A resource type, with Kafka's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    /// A topic (2).
    Topic,
    /// A consumer group (3).
    Group,
    /// The cluster (4; its one resource is named `kafka-cluster`).
    Cluster,
    /// A transactional id (5).
    TransactionalId,
}

impl ResourceType {
    /// From Kafka's code.
    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            _ => return None,
        })
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    /// Kafka's name (`Topic`, `Group`, `Cluster`, `TransactionalId`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "Topic",
            ResourceType::Group => "Group",
            ResourceType::Cluster => "Cluster",
            ResourceType::TransactionalId => "TransactionalId",
        }
    }
}

/// The name of the cluster resource.
pub const CLUSTER: &str = "kafka-cluster";

/// An operation, with Kafka's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Every operation (2).
    All,
    /// 3.
    Read,
    /// 4.
    Write,
    /// 5.
    Create,
    /// 6.
    Delete,
    /// 7.
    Alter,
    /// 8.
    Describe,
    /// 9.
    ClusterAction,
    /// 10.
    DescribeConfigs,
    /// 11.
    AlterConfigs,
    /// 12.
    IdempotentWrite,
}

const OPERATIONS: [(Operation, i8, &str); 11] = [
    (Operation::All, 2, "All"),
    (Operation::Read, 3, "Read"),
    (Operation::Write, 4, "Write"),
    (Operation::Create, 5, "Create"),
    (Operation::Delete, 6, "Delete"),
    (Operation::Alter, 7, "Alter"),
    (Operation::Describe, 8, "Describe"),
    (Operation::ClusterAction, 9, "ClusterAction"),
    (Operation::DescribeConfigs, 10, "DescribeConfigs"),
    (Operation::AlterConfigs, 11, "AlterConfigs"),
    (Operation::IdempotentWrite, 12, "IdempotentWrite"),
];

impl Operation {
    /// From Kafka's code.
    pub fn from_code(code: i8) -> Option<Operation> {
        OPERATIONS.iter().find(|o| o.1 == code).map(|o| o.0)
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        OPERATIONS.iter().find(|o| o.0 == self).map_or(0, |o| o.1)
    }

    /// From Kafka's name, any case (`read`, `DescribeConfigs`).
    pub fn from_name(name: &str) -> Option<Operation> {
        OPERATIONS.iter().find(|o| o.2.eq_ignore_ascii_case(name)).map(|o| o.0)
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        OPERATIONS.iter().find(|o| o.0 == self).map_or("Unknown", |o| o.2)
    }

    /// Operations an ALLOW of this one also allows (besides itself).
    fn implies(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe && matches!(self, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

/// How a binding's name matches resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The exact name, or `*` for every resource of the type (3).
    Literal,
    /// Every name that starts with it (4).
    Prefixed,
}

impl PatternType {
    /// From Kafka's code.
    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// Resource type.
    pub resource_type: ResourceType,
    /// Resource name (or prefix, or `*`).
    pub name: String,
    /// Literal or prefixed.
    pub pattern: PatternType,
    /// `User:NAME` or `User:*`.
    pub principal: String,
    /// A client IP, or `*`.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// Allow (`true`) or deny.
    pub allow: bool,
}

impl std::fmt::Display for AclBinding {
    /// Kafka's way: `(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)
    /// on Topic:LITERAL:orders`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = if self.pattern == PatternType::Literal { "LITERAL" } else { "PREFIXED" };
        write!(
            f,
            "(principal={}, host={}, operation={}, permissionType={}) on {}:{pattern}:{}",
            self.principal,
            self.host,
            self.operation.name(),
            if self.allow { "ALLOW" } else { "DENY" },
            self.resource_type.name(),
            self.name
        )
    }
}

impl AclBinding {
    fn matches_resource(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == "*",
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }

    fn matches_who(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*") && (self.host == "*" || self.host == host)
    }
}

/// Which bindings a DescribeAcls or DeleteAcls filter selects (None: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type (None: any).
    pub resource_type: Option<ResourceType>,
    /// Name (None: any).
    pub name: Option<String>,
    /// Pattern: None any; Some(Literal|Prefixed) exactly; `matching` selects every
    /// binding that would apply to the resource `name` (Kafka's MATCH).
    pub pattern: Option<PatternType>,
    /// Kafka's MATCH pattern filter.
    pub matching: bool,
    /// Principal (None: any).
    pub principal: Option<String>,
    /// Host (None: any).
    pub host: Option<String>,
    /// Operation (None: any).
    pub operation: Option<Operation>,
    /// Permission (None: any).
    pub allow: Option<bool>,
}

impl AclFilter {
    /// Whether `b` is selected.
    pub fn selects(&self, b: &AclBinding) -> bool {
        let resource = match (&self.name, self.matching) {
            (Some(n), true) => self.resource_type.is_none_or(|t| t == b.resource_type) && b.matches_resource(b.resource_type, n),
            (n, _) => self.resource_type.is_none_or(|t| t == b.resource_type) && n.as_ref().is_none_or(|n| *n == b.name) && self.pattern.is_none_or(|p| p == b.pattern),
        };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.allow.is_none_or(|a| a == b.allow)
    }
}

/// Whether `principal` connecting from `host` may do `op` on the resource, under `acls`
/// and `super_users`.
pub fn authorized<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    super_users: &[String],
    principal: &str,
    host: &str,
    rt: ResourceType,
    name: &str,
    op: Operation,
) -> bool {
    if super_users.iter().any(|s| s == principal) {
        return true;
    }
    let applying = || acls.clone().into_iter().filter(|b| b.matches_resource(rt, name) && b.matches_who(principal, host));
    if applying().any(|b| !b.allow && (b.operation == op || b.operation == Operation::All)) {
        return false;
    }
    applying().any(|b| b.allow && b.operation.implies(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: ResourceType, name: &str, pattern: PatternType, principal: &str, op: Operation, allow: bool) -> AclBinding {
        AclBinding { resource_type: rt, name: name.into(), pattern, principal: principal.into(), host: "*".into(), operation: op, allow }
    }

    #[test]
    fn deny_wins_prefixes_match_and_read_implies_describe() {
        use Operation::*;
        use PatternType::*;
        use ResourceType::*;
        let acls = vec![
            acl(Topic, "orders", Literal, "User:alice", Write, true),
            acl(Topic, "shop-", Prefixed, "User:bob", Read, true),
            acl(Topic, "shop-secret", Literal, "User:bob", Read, false),
            acl(Group, "*", Literal, "User:*", Read, true),
            acl(Topic, "pub", Literal, "User:carol", All, true),
        ];
        let can = |p: &str, rt, n: &str, op| authorized(&acls, &["User:admin".to_string()], p, "127.0.0.1", rt, n, op);
        assert!(can("User:alice", Topic, "orders", Write));
        assert!(!can("User:alice", Topic, "orders", Read));
        assert!(can("User:alice", Topic, "orders", Describe), "Write implies Describe");
        assert!(can("User:bob", Topic, "shop-eu", Read) && can("User:bob", Topic, "shop-us", Describe));
        assert!(!can("User:bob", Topic, "shop-secret", Read), "deny beats the prefixed allow");
        assert!(!can("User:bob", Topic, "shopping", Read));
        assert!(can("User:dave", Group, "any-group", Read), "wildcard name and principal");
        assert!(can("User:carol", Topic, "pub", Alter) && !can("User:carol", Topic, "pub2", Read));
        assert!(can("User:admin", Cluster, CLUSTER, Alter), "super user");
        assert!(!can("User:alice", Cluster, CLUSTER, Describe), "deny by default");
        let mut host_bound = acl(Topic, "t", Literal, "User:alice", Read, true);
        host_bound.host = "10.0.0.1".into();
        assert!(!authorized(&[host_bound], &[], "User:alice", "127.0.0.1", Topic, "t", Read));
    }

    #[test]
    fn filters_select_exactly_or_by_match() {
        use Operation::*;
        use PatternType::*;
        use ResourceType::*;
        let a = acl(Topic, "shop-", Prefixed, "User:bob", Read, true);
        let b = acl(Topic, "shop-eu", Literal, "User:bob", Read, true);
        let exact = AclFilter { name: Some("shop-eu".into()), pattern: Some(Literal), ..Default::default() };
        assert!(!exact.selects(&a) && exact.selects(&b));
        let matching = AclFilter { resource_type: Some(Topic), name: Some("shop-eu".into()), matching: true, ..Default::default() };
        assert!(matching.selects(&a) && matching.selects(&b));
        assert!(AclFilter::default().selects(&a));
        assert!(!AclFilter { operation: Some(Write), ..Default::default() }.selects(&a));
        assert_eq!((Operation::from_code(8), Operation::from_name("describeconfigs")), (Some(Describe), Some(DescribeConfigs)));
    }
}
