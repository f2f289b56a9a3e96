//! The compiled topology: nodes, state stores, internal topics, and its split into
//! sub-topologies (connected at repartition topics), each of which runs as one task per
//! input partition.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use samsa_client::ConsumerRecord;

use crate::error::{Error, Result};
use crate::processor::NodeFactory;
use crate::record::{Cloner, Rec};
use crate::stores::StoreDef;

/// A task: one sub-topology on one partition of its input topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// Sub-topology number.
    pub subtopology: u32,
    /// Input partition.
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

impl std::str::FromStr for TaskId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once('_').ok_or_else(|| format!("`{s}` is not a task id like 0_3"))?;
        Ok(TaskId { subtopology: a.parse().map_err(|_| format!("bad task id `{s}`"))?, partition: b.parse().map_err(|_| format!("bad task id `{s}`"))? })
    }
}

/// A topic named by the application, or an internal one (prefixed with the application id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TopicName {
    User(String),
    /// Repartition topic `<app id>-<name>-repartition`.
    Repartition(String),
}

impl TopicName {
    pub(crate) fn resolve(&self, app_id: &str) -> String {
        match self {
            TopicName::User(t) => t.clone(),
            TopicName::Repartition(n) => format!("{app_id}-{n}-repartition"),
        }
    }
}

/// Turns a consumed record into a typed (erased) record.
pub(crate) type Deserializer = Arc<dyn Fn(&ConsumerRecord) -> Result<Rec, (&'static str, String)> + Send + Sync>;

pub(crate) enum NodeKind {
    Source { topics: Vec<TopicName>, deser: Deserializer },
    Processor,
    Sink { topic: TopicName },
}

pub(crate) struct NodeDef {
    pub name: String,
    pub kind: NodeKind,
    pub factory: Option<NodeFactory>,
    pub children: Vec<usize>,
    pub parents: Vec<usize>,
    pub stores: Vec<String>,
    /// Clones the records this node emits (for fan-out).
    pub cloner: Cloner,
}

/// A global table: every instance reads all partitions of `topic` into `store`.
pub(crate) struct GlobalDef {
    pub topic: String,
    pub store: Arc<StoreDef>,
}

/// One sub-topology.
#[derive(Debug, Clone)]
pub(crate) struct SubTopology {
    pub id: u32,
    pub nodes: Vec<usize>,
    pub sources: Vec<TopicName>,
    pub stores: Vec<String>,
}

/// A repartition topic the application creates.
#[derive(Debug, Clone)]
pub(crate) struct RepartitionDef {
    /// Fixed partition count; `None`: as many as the upstream input topics.
    pub partitions: Option<i32>,
}

/// A built topology, ready to run with [`crate::KafkaStreams`] or the
/// [`crate::TopologyTestDriver`].
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, Arc<StoreDef>>,
    pub(crate) subs: Vec<SubTopology>,
    pub(crate) repartitions: BTreeMap<String, RepartitionDef>,
    pub(crate) globals: Vec<GlobalDef>,
    /// Groups of topics that must have equal partition counts (join inputs).
    pub(crate) copartition: Vec<BTreeSet<TopicName>>,
}

impl Topology {
    pub(crate) fn new(
        nodes: Vec<NodeDef>,
        stores: BTreeMap<String, Arc<StoreDef>>,
        repartitions: BTreeMap<String, RepartitionDef>,
        globals: Vec<GlobalDef>,
        copartition: Vec<BTreeSet<TopicName>>,
    ) -> Result<Topology> {
        // Union-find over parent/child edges and shared stores.
        let n = nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let mut by_store: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for &c in &node.children {
                let (a, b) = (find(&mut parent, i), find(&mut parent, c));
                parent[a] = b;
            }
            for s in &node.stores {
                if !stores.contains_key(s) && !globals.iter().any(|g| &g.store.name == s) {
                    return Err(Error::Topology(format!("node `{}` uses state store `{s}`, which was never added", node.name)));
                }
                if let Some(&j) = by_store.get(s.as_str()) {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                } else {
                    by_store.insert(s, i);
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            let r = find(&mut parent, i);
            groups.entry(r).or_default().push(i);
        }
        let mut comps: Vec<Vec<usize>> = groups.into_values().collect();
        comps.sort_by_key(|c| c[0]);
        let global_stores: BTreeSet<&str> = globals.iter().map(|g| g.store.name.as_str()).collect();
        let mut subs = Vec::new();
        for c in comps {
            let sources: Vec<TopicName> =
                c.iter().flat_map(|&i| if let NodeKind::Source { topics, .. } = &nodes[i].kind { topics.clone() } else { Vec::new() }).collect();
            if sources.is_empty() {
                return Err(Error::Topology(format!("node `{}` is not connected to any source topic", nodes[c[0]].name)));
            }
            let stores: BTreeSet<String> =
                c.iter().flat_map(|&i| nodes[i].stores.iter().filter(|s| !global_stores.contains(s.as_str())).cloned()).collect();
            subs.push(SubTopology { id: subs.len() as u32, nodes: c, sources, stores: stores.into_iter().collect() });
        }
        let mut seen = BTreeSet::new();
        for s in &subs {
            for t in &s.sources {
                if !seen.insert(t.clone()) {
                    return Err(Error::Topology(format!("topic `{}` is read by two sources; read it once and reuse the stream", t.resolve("<app>"))));
                }
            }
        }
        Ok(Topology { nodes, stores, subs, repartitions, globals, copartition })
    }

    /// The sub-topology that reads `topic` (resolved name), and the source node for it.
    pub(crate) fn source_of(&self, app_id: &str, topic: &str) -> Option<(u32, usize)> {
        for s in &self.subs {
            for &i in &s.nodes {
                if let NodeKind::Source { topics, .. } = &self.nodes[i].kind {
                    if topics.iter().any(|t| t.resolve(app_id) == topic) {
                        return Some((s.id, i));
                    }
                }
            }
        }
        None
    }

    /// Every topic the application reads (resolved), global tables excluded.
    pub(crate) fn source_topics(&self, app_id: &str) -> Vec<String> {
        self.subs.iter().flat_map(|s| s.sources.iter().map(|t| t.resolve(app_id))).collect()
    }

    /// Names of the state stores (global ones excluded).
    pub fn store_names(&self) -> Vec<String> {
        self.stores.keys().cloned().collect()
    }

    /// The topology as text, in the layout of Kafka Streams' `TopologyDescription`.
    pub fn describe(&self) -> String {
        let mut s = String::from("Topologies:\n");
        for sub in &self.subs {
            let _ = writeln!(s, "   Sub-topology: {}", sub.id);
            for &i in &sub.nodes {
                let n = &self.nodes[i];
                match &n.kind {
                    NodeKind::Source { topics, .. } => {
                        let t: Vec<String> = topics.iter().map(|t| t.resolve("<app>")).collect();
                        let _ = writeln!(s, "    Source: {} (topics: [{}])", n.name, t.join(", "));
                    }
                    NodeKind::Processor => {
                        let _ = writeln!(s, "    Processor: {} (stores: [{}])", n.name, n.stores.join(", "));
                    }
                    NodeKind::Sink { topic } => {
                        let _ = writeln!(s, "    Sink: {} (topic: {})", n.name, topic.resolve("<app>"));
                    }
                }
                if !matches!(n.kind, NodeKind::Sink { .. }) {
                    let kids: Vec<&str> = n.children.iter().map(|&c| self.nodes[c].name.as_str()).collect();
                    let _ = writeln!(s, "      --> {}", if kids.is_empty() { "none".to_string() } else { kids.join(", ") });
                }
                if !n.parents.is_empty() {
                    let ps: Vec<&str> = n.parents.iter().map(|&c| self.nodes[c].name.as_str()).collect();
                    let _ = writeln!(s, "      <-- {}", ps.join(", "));
                }
            }
            s.push('\n');
        }
        for g in &self.globals {
            let _ = writeln!(s, "   Global store: {} (topic: {})", g.store.name, g.topic);
        }
        s
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
