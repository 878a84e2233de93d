// The package's map: everything a client author imports from "zcoord".

export { Client, type ConnectOptions, type CallOptions, type SendOptions } from "./client.js";
export {
  DISCOVERY_FILE,
  dataHome,
  fnv1a64Hex,
  pidAlive,
  readDiscovery,
  resolveDataDir,
  resolveTarget,
  workspaceDataDir,
  type DiscoveryFile,
  type DiscoveryOptions,
  type Target,
  type TargetOptions,
} from "./discovery.js";
export {
  CallError,
  CallTimeoutError,
  ClosedError,
  DiscoveryError,
  ErrorCode,
  ErrorKind,
  EventsLostError,
  NoWelcomeError,
  ZcoordError,
  type ErrorCodeValue,
  type ErrorKindValue,
} from "./errors.js";
export { EventHub, EventIterator, type StreamOptions } from "./events.js";
export { ApprovalDesk, type ApprovalDeskOptions, type HitlAnswer, type HitlHandler, type HitlOutcome } from "./hitl.js";
export { PROTOCOL_VERSIONS, type MethodName, type Methods, type ParamsOf, type ResultOf } from "./methods.js";
export { Mirror, type MirrorChange, type MirrorOptions } from "./mirror.js";
export { Replica, ReplicaDiverged, type ReplicaMessage, type ReplicaSnapshot } from "./replica.js";
export { DEFAULT_TIMEOUT_MS, RpcConnection } from "./rpc.js";
export { Sequencer, type ReplayFn, type ReplayPage, type StreamBreak, type StreamItem } from "./sequencer.js";
export { PLAIN_USERNAME } from "./sockets.js";
export { ToolRunner, type ClientTool, type ToolCallOutcome, type ToolOutput, type ToolRunnerOptions } from "./tools.js";
export { keyOf, matches, WELCOME_TOPIC, type Topic, type TopicPayloads, type ZEvent } from "./topics.js";
export { Turn, type TurnOutcome } from "./turn.js";
export { isOwnWelcome, isWelcome, newWelcomeToken, openLiveSubscriber, type LiveSubscriber } from "./welcome.js";
export type * from "./generated/types.js";
