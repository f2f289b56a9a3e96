//! InitProducerId for idempotent producers: a producer id from a block the metadata quorum
//! hands this broker (so ids are unique across the cluster), epoch 0; a producer that
//! presents its id and epoch (KIP-360) gets the epoch bumped.

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::meta::{Command, Outcome};
use crate::server::BrokerState;

/// Producer ids fetched from the quorum at a time.
const BLOCK: i64 = 1000;

async fn next_id(state: &BrokerState) -> Result<i64, ResponseError> {
    let mut ids = state.producer_ids.lock().await;
    if ids.0 >= ids.1 {
        match state.controller.propose(Command::AllocateProducerIds { count: BLOCK }).await {
            Ok(Outcome::ProducerIds { first }) => *ids = (first, first + BLOCK),
            Ok(_) => return Err(ResponseError::UnknownServerError),
            Err(e) => {
                tracing::warn!("cannot allocate producer ids: {}", e.message);
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    let id = ids.0;
    ids.0 += 1;
    Ok(id)
}

/// Handles InitProducerId (idempotence only; transactional ids come with transactions).
pub async fn init_producer_id(state: &BrokerState, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        r.error_code = ResponseError::CoordinatorNotAvailable.code();
        tracing::info!("InitProducerId with a transactional id refused: transactions are not supported yet");
        return r;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        r.producer_id = req.producer_id;
        r.producer_epoch = req.producer_epoch + 1;
        return r;
    }
    match next_id(state).await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => r.error_code = e.code(),
    }
    r
}
