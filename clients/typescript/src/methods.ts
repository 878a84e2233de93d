// The method table: every method of PROTOCOL §5 with its params and result types, so that
// `call(method, params)` is typed end to end. Wire types only; no sockets here.

import type * as T from "./generated/types.js";

export interface Methods {
  "instance.ping": { params: T.InstancePingParams; result: T.InstancePingResult };
  "instance.info": { params: T.InstanceInfoParams; result: T.InstanceInfoResult };
  "state.sync": { params: T.StateSyncParams; result: T.StateSyncResult };
  "session.list": { params: T.SessionListParams; result: T.SessionListResult };
  "session.get": { params: T.SessionGetParams; result: T.SessionGetResult };
  "session.create": { params: T.SessionCreateParams; result: T.SessionCreateResult };
  "session.delete": { params: T.SessionDeleteParams; result: T.SessionDeleteResult };
  "session.activate": { params: T.SessionActivateParams; result: T.SessionActivateResult };
  "session.configure": { params: T.SessionConfigureParams; result: T.SessionConfigureResult };
  "session.interrupt": { params: T.SessionInterruptParams; result: T.SessionInterruptResult };
  "model.list": { params: T.ModelListParams; result: T.ModelListResult };
  "message.send": { params: T.MessageSendParams; result: T.MessageSendResult };
  "message.list": { params: T.MessageListParams; result: T.MessageListResult };
  "message.get": { params: T.MessageGetParams; result: T.MessageGetResult };
  "hitl.list": { params: T.HitlListParams; result: T.HitlListResult };
  "hitl.respond": { params: T.HitlRespondParams; result: T.HitlRespondResult };
  "client.hello": { params: T.ClientHelloParams; result: T.ClientHelloResult };
  "client.list": { params: T.ClientListParams; result: T.ClientListResult };
  "client.goodbye": { params: T.ClientGoodbyeParams; result: T.ClientGoodbyeResult };
  "tool.claim": { params: T.ToolClaimParams; result: T.ToolClaimResult };
  "tool.result": { params: T.ToolResultParams; result: T.ToolResultResult };
  "events.replay": { params: T.EventsReplayParams; result: T.EventsReplayResult };
}

export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]["params"];
export type ResultOf<M extends MethodName> = Methods[M]["result"];

/** The protocol versions this client speaks, for `client.hello` (PROTOCOL §13). */
export const PROTOCOL_VERSIONS: readonly number[] = [2];
