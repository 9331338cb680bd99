/**
 * @apigw/ext-authz: the Envoy ext_authz service (gRPC envoy.service.auth.v3.Authorization/Check).
 *
 * Standalone: `npm run start:ext-authz` (main.ts, Redis). Embedded: start it in-process with
 * `createExtAuthzServer({ store, masterKey, logger, metrics, options })` over any CredentialStore
 * (e.g. the control plane's MemoryCredentialStore).
 */
export { createExtAuthzServer, type ExtAuthzServer, type ExtAuthzServerDeps, type ExtAuthzServerOptions } from "./server";
export {
  createChecker,
  type AllowDecision,
  type CheckInput,
  type CheckOptions,
  type Checker,
  type CheckerDeps,
  type CredentialType,
  type Decision,
  type DenyDecision,
  type Identity,
} from "./check";
export { loadExtAuthzConfig, type ExtAuthzConfig } from "./config";
export { createExtAuthzMetrics, createExtAuthzRegistry, type ExtAuthzMetrics } from "./metrics";
export { createExtAuthzAdminServer, storeReadiness, type ReadinessCheck } from "./admin";
export { createExtAuthzLogger } from "./logger";
export { REASONS, type DenialReason, type ReasonName } from "./reasons";
export { UPSTREAM, UPSTREAM_IDENTITY_HEADERS, ERROR_HEADERS } from "./headers";
export {
  authorizationService,
  checkInputOf,
  checkResponseOf,
  checkSchemas,
  CHECK_METHOD_PATH,
  decodeCheckRequest,
  decodeCheckResponse,
  encodeCheckRequest,
  encodeCheckResponse,
} from "./protocol";
export { fixedWindow, planWindow, trafficCounterKey, planCounterKey } from "./windows";
