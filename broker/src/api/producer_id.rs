//! InitProducerId. Idempotent producers get a producer id from a block the metadata quorum
//! hands this broker (so ids are unique across the cluster) at epoch 0, and a producer
//! that presents its id and epoch (KIP-360) gets the epoch bumped. Transactional producers
//! are served by their transaction coordinator ([`crate::txn`]).

use std::sync::Arc;

use kafka_protocol::messages::*;

use crate::server::BrokerState;

/// Handles InitProducerId.
pub async fn init_producer_id(state: &Arc<BrokerState>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let given = (req.producer_id.0 >= 0 && req.producer_epoch >= 0).then_some((req.producer_id.0, req.producer_epoch));
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        match state.txns.init_producer_id(state, id, req.transaction_timeout_ms, given).await {
            Ok((pid, epoch)) => {
                r.producer_id = ProducerId(pid);
                r.producer_epoch = epoch;
            }
            Err(e) => {
                tracing::debug!(transactional_id = %id.0, "InitProducerId: {e:?}");
                r.error_code = e.code();
            }
        }
        return r;
    }
    if let Some((pid, epoch)) = given.filter(|(_, e)| *e < i16::MAX - 1) {
        r.producer_id = ProducerId(pid);
        r.producer_epoch = epoch + 1;
        return r;
    }
    match state.next_producer_id().await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => r.error_code = e.code(),
    }
    r
}
