export * from "./snapshot";
export * from "./cache";
export * from "./metrics";
export * from "./protocol";
export { AdsSession, type XdsProtocol } from "./session";
export * from "./server";
export {
  configDumpResponse,
  xdsAdminHandlers,
  xdsNodesResponse,
  type AckInfo,
  type AdminQuery,
  type AdminResponse,
  type NackInfo,
  type NackRecord,
  type NodeStatus,
  type SentInfo,
  type TypeStatus,
  type XdsStatus,
} from "./status";
