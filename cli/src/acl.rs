//! `samsa acl add|list|remove`: ACL bindings, with the flags of Kafka's `kafka-acls.sh`.

use clap::Subcommand;
use samsa_client::acl::{AclBinding, AclFilter, Operation, PatternType, ResourceType, CLUSTER};
use samsa_client::admin::Admin;

use crate::util::print_table;

/// Arguments of this command.
#[derive(clap::Args)]
pub struct AclArgs {
    /// A broker to start from (a PLAINTEXT listener; with the authorizer on, its principal
    /// User:ANONYMOUS needs to be in super.users or have Alter/Describe on the cluster).
    #[arg(long, global = true, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    #[command(subcommand)]
    command: AclCommand,
}

/// The resource an ACL command is about.
#[derive(clap::Args, Clone)]
struct Resource {
    /// A topic (or, with --resource-pattern-type prefixed, a topic name prefix; `*`: every
    /// topic).
    #[arg(long, value_name = "NAME", group = "resource")]
    topic: Option<String>,
    /// A consumer group (or prefix).
    #[arg(long, value_name = "NAME", group = "resource")]
    group: Option<String>,
    /// A transactional id (or prefix).
    #[arg(long, value_name = "ID", group = "resource")]
    transactional_id: Option<String>,
    /// The cluster (CreateTopics, ACLs, users, configs of brokers).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// literal (the name, or `*`) or prefixed (every name starting with it).
    #[arg(long, default_value = "literal", value_name = "TYPE")]
    resource_pattern_type: String,
}

impl Resource {
    fn get(&self) -> Option<(ResourceType, String)> {
        if let Some(t) = &self.topic {
            Some((ResourceType::Topic, t.clone()))
        } else if let Some(g) = &self.group {
            Some((ResourceType::Group, g.clone()))
        } else if let Some(t) = &self.transactional_id {
            Some((ResourceType::TransactionalId, t.clone()))
        } else {
            self.cluster.then(|| (ResourceType::Cluster, CLUSTER.to_string()))
        }
    }

    fn pattern(&self) -> Result<PatternType, String> {
        match self.resource_pattern_type.to_ascii_lowercase().as_str() {
            "literal" => Ok(PatternType::Literal),
            "prefixed" => Ok(PatternType::Prefixed),
            other => Err(format!("--resource-pattern-type {other}: use literal or prefixed")),
        }
    }
}

#[derive(Subcommand)]
enum AclCommand {
    /// Allow or deny principals operations on a resource.
    Add {
        #[command(flatten)]
        resource: Resource,
        /// A principal to allow (User:NAME, or User:* for everyone); repeatable.
        #[arg(long, value_name = "PRINCIPAL")]
        allow_principal: Vec<String>,
        /// A principal to deny (deny wins over allow); repeatable.
        #[arg(long, value_name = "PRINCIPAL")]
        deny_principal: Vec<String>,
        /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
        /// AlterConfigs, IdempotentWrite or All; repeatable.
        #[arg(long, value_name = "OPERATION", required = true)]
        operation: Vec<String>,
        /// Only from this client IP (default: any).
        #[arg(long, default_value = "*", value_name = "IP")]
        host: String,
    },
    /// List ACLs (all, or those of a resource and/or principal).
    List {
        #[command(flatten)]
        resource: Resource,
        /// Only this principal's.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },
    /// Remove the ACLs of a resource (all of them, or only a principal's / an operation's).
    Remove {
        #[command(flatten)]
        resource: Resource,
        /// Only this principal's.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
        /// Only this operation's.
        #[arg(long, value_name = "OPERATION")]
        operation: Option<String>,
    },
}

fn operation(name: &str) -> Result<Operation, String> {
    Operation::from_name(name)
        .ok_or_else(|| format!("--operation {name}: use Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite or All"))
}

fn principal(p: &str) -> Result<String, String> {
    if p.starts_with("User:") && p.len() > 5 {
        Ok(p.to_string())
    } else {
        Err(format!("principal `{p}` must look like User:NAME (or User:*)"))
    }
}

/// Runs the command.
pub async fn run(args: AclArgs) -> Result<(), String> {
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| e.to_string())?;
    match args.command {
        AclCommand::Add { resource, allow_principal, deny_principal, operation: ops, host } => {
            let (rt, name) = resource.get().ok_or("name the resource: --topic, --group, --transactional-id or --cluster")?;
            let pattern = resource.pattern()?;
            if allow_principal.is_empty() && deny_principal.is_empty() {
                return Err("give --allow-principal and/or --deny-principal".into());
            }
            let mut acls = Vec::new();
            for (list, allow) in [(&allow_principal, true), (&deny_principal, false)] {
                for p in list {
                    for op in &ops {
                        acls.push(AclBinding { resource_type: rt, name: name.clone(), pattern, principal: principal(p)?, host: host.clone(), operation: operation(op)?, allow });
                    }
                }
            }
            admin.create_acls(&acls).await.map_err(|e| e.to_string())?;
            for a in &acls {
                println!("added {a}");
            }
        }
        AclCommand::List { resource, principal: p } => {
            let (rt, name) = resource.get().unzip();
            let pattern = if name.is_some() { Some(resource.pattern()?) } else { None };
            let f = AclFilter { resource_type: rt, name, pattern, principal: p.as_deref().map(principal).transpose()?, ..Default::default() };
            let acls = admin.describe_acls(&f).await.map_err(|e| e.to_string())?;
            let rows: Vec<Vec<String>> = acls
                .iter()
                .map(|a| {
                    let pattern = if a.pattern == PatternType::Literal { "LITERAL" } else { "PREFIXED" };
                    vec![
                        format!("{}:{pattern}:{}", a.resource_type.name(), a.name),
                        a.principal.clone(),
                        a.host.clone(),
                        a.operation.name().into(),
                        (if a.allow { "ALLOW" } else { "DENY" }).into(),
                    ]
                })
                .collect();
            print_table(&["RESOURCE", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"], &rows);
        }
        AclCommand::Remove { resource, principal: p, operation: op } => {
            let (rt, name) = resource.get().ok_or("name the resource: --topic, --group, --transactional-id or --cluster")?;
            let f = AclFilter {
                resource_type: Some(rt),
                name: Some(name),
                pattern: Some(resource.pattern()?),
                principal: p.as_deref().map(principal).transpose()?,
                operation: op.as_deref().map(operation).transpose()?,
                ..Default::default()
            };
            let removed = admin.delete_acls(&f).await.map_err(|e| e.to_string())?;
            if removed.is_empty() {
                println!("no ACL matched");
            }
            for a in &removed {
                println!("removed {a}");
            }
        }
    }
    Ok(())
}
