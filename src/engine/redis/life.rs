//! What a node knows of the life of Redis's data, and where a loss of it is
//! reported.
//!
//! Each unit of failure keeps a sentinel: one for a single server
//! (`cs:sentinel`), one per hash slot on a Redis Cluster
//! (`cs:sentinel:{<tag>}`, in the slot it fences), since a script or a
//! transaction may touch the keys of one slot only. A node learns a slot's
//! sentinel the first time it works in that slot (setting one if there is
//! none) and fences every operation there on it: a sentinel that vanished or
//! changed means the data of its slot was lost (a server restarted empty, a
//! flush) since the node last looked.
//!
//! A loss is recorded once per change (`Life::record`), whichever notices it
//! first: an operation (the fence) or the health check. Recording it makes
//! the node rebuild every conversation it holds (`LogLost`) and forget what
//! it knew of every other slot, which it learns again at its next operation
//! there: a master that lost its data lost all of its slots, and this node
//! rebuilds once for all of them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::slots::slot_tag;
use crate::engine::{BusMessage, EngineError, EngineResult};

/// The sentinel of `slot`'s data: the single server's (`slots` is 1) or that
/// hash slot's.
pub fn sentinel_key(slots: usize, slot: u16) -> String {
    if slots == 1 {
        "cs:sentinel".to_owned()
    } else {
        format!("cs:sentinel:{{{}}}", slot_tag(slot))
    }
}

pub fn data_lost() -> EngineError {
    EngineError::Unavailable(
        "the log store lost its data; conversations are being rebuilt, retry".into(),
    )
}

pub struct Life {
    state: Mutex<LifeState>,
    pub bus: mpsc::UnboundedSender<BusMessage>,
    rebuild_window: Duration,
}

struct LifeState {
    /// Each slot's sentinel in the life this node works in (`None`: not
    /// learnt yet, or forgotten at a loss); every fenced operation requires
    /// it.
    known: Vec<Option<Arc<str>>>,
    /// When this node last recorded a loss.
    lost_at: Option<Instant>,
}

impl Life {
    pub fn new(
        slots: usize,
        bus: mpsc::UnboundedSender<BusMessage>,
        rebuild_window: Duration,
    ) -> Life {
        Life {
            state: Mutex::new(LifeState {
                known: vec![None; slots.max(1)],
                lost_at: None,
            }),
            bus,
            rebuild_window,
        }
    }

    fn state(&self) -> MutexGuard<'_, LifeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sentinel operations on `slot` are fenced on now, if known.
    pub fn known(&self, slot: u16) -> Option<Arc<str>> {
        self.state().known.get(usize::from(slot)).cloned().flatten()
    }

    /// Learns `slot`'s sentinel, unless it is known already (then that one
    /// stays, and is answered).
    pub fn learn(&self, slot: u16, value: &str) -> Arc<str> {
        let mut state = self.state();
        let known = &mut state.known[usize::from(slot)];
        known.get_or_insert_with(|| value.into()).clone()
    }

    /// Redis holds `current` as `slot`'s sentinel, seen by someone who
    /// checked it against `checked`. If that is a change from the life this
    /// node still works in, the loss is recorded: `current` becomes the
    /// slot's known sentinel, every other slot's is forgotten, the rebuild
    /// window opens, and `LogLost` goes on the bus, so that the node
    /// rebuilds what it holds. Compare-and-set: when the known sentinel is no
    /// longer `checked`, someone else recorded this change already (or a
    /// later one), and a late observer reports nothing. So each change is
    /// reported exactly once per node.
    pub fn record(&self, slot: u16, checked: &str, current: &str) {
        let mut state = self.state();
        let slot = usize::from(slot);
        if state.known[slot].as_deref() != Some(checked) || current == checked {
            return;
        }
        for known in state.known.iter_mut() {
            *known = None;
        }
        state.known[slot] = Some(current.into());
        state.lost_at = Some(Instant::now());
        tracing::error!("Redis lost its data: rebuilding the conversations this node holds");
        metrics::counter!("chatstream_log_losses_total").increment(1);
        // Under the lock, so that LogLosts of successive losses keep their order.
        let _ = self.bus.send(BusMessage::LogLost);
    }

    /// A conversation is missing: `Ok` (it does not exist) unless Redis
    /// recently lost its data and nodes may still be rebuilding it.
    pub fn missing(&self) -> EngineResult<()> {
        match self.state().lost_at {
            Some(at) if at.elapsed() < self.rebuild_window => Err(data_lost()),
            _ => Ok(()),
        }
    }
}
