//! The Connections supervisor: one Connection actor per open WebSocket.
//!
//! Connections are spawned here, on the main runtime, not on the actix worker
//! that accepted the socket. When the node stops, this is where every socket is
//! told to reconnect elsewhere.

pub mod connection;
pub mod outbox;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::NodeContext;
use super::directory::ActorKind;
use connection::{Connection, ConnectionArgs, ConnectionMsg};

pub enum ConnectionsMsg {
    Open {
        args: ConnectionArgs,
        reply: RpcReplyPort<Result<ActorRef<ConnectionMsg>, String>>,
    },
    /// Close every socket with `code` (1001 stopping, 1012 restarting).
    CloseAll { code: u16 },
}

pub struct Connections;

pub struct ConnectionsState {
    context: Arc<NodeContext>,
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
        Ok(ConnectionsState { context })
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
                let result = Actor::spawn_linked(None, Connection, args, myself.get_cell())
                    .await
                    .map(|(actor, _)| actor)
                    .map_err(|e| e.to_string());
                if let Ok(actor) = &result {
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
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // A failed Connection drops its outbox without closing it: the
                // write loop then closes the socket with 1011.
                tracing::error!(actor = %cell.get_id(), %error, "a connection actor failed");
                state.context.directory.remove(&cell);
            }
            _ => {}
        }
        Ok(())
    }
}
