//! Transactions: ListTransactions (every broker, merged), DescribeTransactions (at each
//! transactional id's coordinator) and DescribeProducers (at partition leaders).

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, TopicName, TransactionalId};

use super::{check, Admin};
use crate::consumer::TopicPartition;
use crate::error::{Error, Result};
use crate::net::cluster::sb;

/// ListTransactions versions (v1 adds the duration filter).
pub(crate) const LIST_TRANSACTIONS: (i16, i16) = (0, 1);
/// DescribeTransactions versions.
pub(crate) const DESCRIBE_TRANSACTIONS: (i16, i16) = (0, 0);
/// DescribeProducers versions.
pub(crate) const DESCRIBE_PRODUCERS: (i16, i16) = (0, 0);

/// A transactional id as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// State: `Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`, `CompleteCommit`, `CompleteAbort`.
    pub state: String,
    /// The broker coordinating it.
    pub coordinator: i32,
}

/// A transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// The broker coordinating it.
    pub coordinator: i32,
    /// State (see [`TransactionListing::state`]).
    pub state: String,
    /// Producer id and current epoch.
    pub producer_id: i64,
    /// Current producer epoch.
    pub producer_epoch: i16,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction started (ms since the epoch), -1 when none is open.
    pub start_ms: i64,
    /// Partitions in the open transaction.
    pub partitions: Vec<TopicPartition>,
}

/// One producer's state in a partition (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i32,
    /// Sequence of its last record, -1 for none.
    pub last_sequence: i32,
    /// Timestamp of its last batch.
    pub last_timestamp: i64,
    /// Epoch of the coordinator that wrote its last marker.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction in this partition, -1 for none.
    pub txn_start_offset: i64,
}

impl Admin {
    /// Every transactional id on every broker, sorted; `states` (empty: all) keeps only
    /// those in the named states.
    pub async fn list_transactions(&self, states: &[String]) -> Result<Vec<TransactionListing>> {
        let md = self.retry(true, || self.cluster.refresh(Some(&[]), false)).await?;
        let mut all = Vec::new();
        for &node in md.brokers.keys() {
            let found = self
                .retry(true, move || async move {
                    let conn = self.cluster.broker(node).await?;
                    let version = conn.version::<ListTransactionsRequest>(LIST_TRANSACTIONS.0, LIST_TRANSACTIONS.1)?;
                    let mut req = ListTransactionsRequest::default().with_state_filters(states.iter().map(|s| sb(s)).collect());
                    if version >= 1 {
                        req = req.with_duration_filter(-1);
                    }
                    let resp = conn.send(&req, version).await?;
                    check(resp.error_code, None, || format!("list transactions on broker {node}"))?;
                    Ok(resp
                        .transaction_states
                        .into_iter()
                        .map(|t| TransactionListing { transactional_id: t.transactional_id.0.to_string(), producer_id: t.producer_id.0, state: t.transaction_state.to_string(), coordinator: node })
                        .collect::<Vec<_>>())
                })
                .await?;
            all.extend(found);
        }
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(all)
    }

    /// State, producer and partitions of these transactional ids, in the order asked.
    pub async fn describe_transactions(&self, ids: &[String]) -> Result<Vec<TransactionDescription>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.retry(true, || self.describe_transaction(id)).await?);
        }
        Ok(out)
    }

    async fn describe_transaction(&self, id: &str) -> Result<TransactionDescription> {
        let (node, conn) = self.cluster.coordinator(id, 1).await?;
        let version = conn.version::<DescribeTransactionsRequest>(DESCRIBE_TRANSACTIONS.0, DESCRIBE_TRANSACTIONS.1)?;
        let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(sb(id))]);
        let resp = conn.send(&req, version).await?;
        let t = resp.transaction_states.into_iter().find(|t| *t.transactional_id.0 == *id).ok_or_else(|| Error::Protocol {
            addr: conn.addr().to_string(),
            reason: format!("DescribeTransactions response has no result for `{id}`"),
        })?;
        check(t.error_code, None, || format!("describe transactional id `{id}`"))?;
        let partitions = t.topics.iter().flat_map(|td| td.partitions.iter().map(|p| TopicPartition::new(td.topic.0.to_string(), *p))).collect();
        Ok(TransactionDescription {
            transactional_id: id.to_string(),
            coordinator: node,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_ms: t.transaction_start_time_ms,
            partitions,
        })
    }

    /// The producers with state in a partition, as its leader reports them.
    pub async fn describe_producers(&self, tp: &TopicPartition) -> Result<Vec<ProducerDescription>> {
        self.retry(true, || async {
            let md = self.cluster.refresh(Some(std::slice::from_ref(&tp.topic)), false).await?;
            let leader = md.leader(&tp.topic, tp.partition).ok_or_else(|| Error::UnknownTopic(tp.topic.clone()))?;
            let conn = self.cluster.broker(leader).await?;
            let version = conn.version::<DescribeProducersRequest>(DESCRIBE_PRODUCERS.0, DESCRIBE_PRODUCERS.1)?;
            let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default().with_name(TopicName(sb(&tp.topic))).with_partition_indexes(vec![tp.partition])]);
            let resp = conn.send(&req, version).await?;
            let p = resp.topics.into_iter().flat_map(|t| t.partitions).find(|p| p.partition_index == tp.partition).ok_or_else(|| Error::Protocol {
                addr: conn.addr().to_string(),
                reason: format!("DescribeProducers response has no result for {}-{}", tp.topic, tp.partition),
            })?;
            check(p.error_code, p.error_message.as_ref(), || format!("describe producers of {}-{}", tp.topic, tp.partition))?;
            Ok(p.active_producers
                .into_iter()
                .map(|s| ProducerDescription {
                    producer_id: s.producer_id.0,
                    producer_epoch: s.producer_epoch,
                    last_sequence: s.last_sequence,
                    last_timestamp: s.last_timestamp,
                    coordinator_epoch: s.coordinator_epoch,
                    txn_start_offset: s.current_txn_start_offset,
                })
                .collect())
        })
        .await
    }
}
