//! The Connections supervisor: one Connection actor per open WebSocket.
//!
//! Connections are spawned here, on the main runtime, not on the actix worker
//! that accepted the socket. When the node stops, this is where every socket is
//! told to reconnect elsewhere.

pub mod connection;
pub mod inbox;
pub mod outbox;

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::NodeContext;
use super::directory::ActorKind;
use crate::protocol::UserId;
use connection::{Connection, ConnectionArgs, ConnectionMsg};

/// Why a connection was not opened.
#[derive(Debug)]
pub enum OpenError {
    /// The user already holds `MAX_CONNECTIONS_PER_USER` on this node.
    OverLimit,
    /// The actor could not start (the node is stopping).
    Failed(String),
}

pub enum ConnectionsMsg {
    Open {
        args: ConnectionArgs,
        reply: RpcReplyPort<Result<ActorRef<ConnectionMsg>, OpenError>>,
    },
    /// Close every socket with `code` (1001 stopping, 1012 restarting).
    CloseAll { code: u16 },
}

pub struct Connections;

pub struct ConnectionsState {
    context: Arc<NodeContext>,
    /// Open connections per user, for `MAX_CONNECTIONS_PER_USER`.
    per_user: HashMap<UserId, usize>,
    /// Whose each open connection is, to count it down when it ends.
    owners: HashMap<ActorId, UserId>,
}

impl ConnectionsState {
    fn ended(&mut self, actor: ActorId) {
        let Some(user) = self.owners.remove(&actor) else {
            return;
        };
        if let Some(count) = self.per_user.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(&user);
            }
        }
    }
}

impl Actor for Connections {
    type Msg = ConnectionsMsg;
    type State = ConnectionsState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        _: ActorRef<ConnectionsMsg>,
        context: Arc<NodeContext>,
    ) -> Result<ConnectionsState, ActorProcessingErr> {
        Ok(ConnectionsState {
            context,
            per_user: HashMap::new(),
            owners: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionsMsg>,
        message: ConnectionsMsg,
        state: &mut ConnectionsState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConnectionsMsg::Open { args, reply } => {
                let connection_id = args.connection_id;
                let user = args.user_id.clone();
                let open = state.per_user.get(&user).copied().unwrap_or(0);
                if open >= state.context.settings.max_connections_per_user {
                    metrics::counter!("chatstream_limit_refusals_total", "limit" => "connections")
                        .increment(1);
                    let _ = reply.send(Err(OpenError::OverLimit));
                    return Ok(());
                }
                let result = Actor::spawn_linked(None, Connection, args, myself.get_cell())
                    .await
                    .map(|(actor, _)| actor)
                    .map_err(|e| OpenError::Failed(e.to_string()));
                if let Ok(actor) = &result {
                    *state.per_user.entry(user.clone()).or_default() += 1;
                    state.owners.insert(actor.get_id(), user);
                    state.context.directory.add(
                        &actor.get_cell(),
                        ActorKind::Connection,
                        connection_id,
                        Some(&myself.get_cell()),
                    );
                }
                let _ = reply.send(result);
            }
            ConnectionsMsg::CloseAll { code } => {
                // The open connections are this supervisor's children.
                for connection in myself.get_children() {
                    let _ = connection.send_message(ConnectionMsg::Close {
                        code,
                        reason: "the node is stopping, reconnect".into(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<ConnectionsMsg>,
        event: SupervisionEvent,
        state: &mut ConnectionsState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.context.directory.remove(&cell);
                state.ended(cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // A failed Connection drops its outbox without closing it: the
                // write loop then closes the socket with 1011.
                tracing::error!(actor = %cell.get_id(), %error, "a connection actor failed");
                state.context.directory.remove(&cell);
                state.ended(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
