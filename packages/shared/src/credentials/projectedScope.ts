import type { APP_CODE_MODES, IpControlParams, SIGNATURE_METHODS, TrafficControlParams } from "../policies/types";
import type { Stage } from "../model/stages";

/*
 * The JSON values stored in a scope (see store.ts). Written by the control plane's projection,
 * read by ext_authz; the only contract between the two.
 */

export interface ScopeConfig {
  revision: number;
  apiId: string;
  stage: Stage;
  deployed: boolean;
  accepts: {
    apiKey?: { in: "header" | "query"; name: string };
    subscriptionKey?: { header: string };
    appAuth?: {
      signature: boolean;
      signatureMethods: (typeof SIGNATURE_METHODS)[number][];
      appCode: (typeof APP_CODE_MODES)[number];
      forceNonceCheck: boolean;
    };
  };
  ipControl?: IpControlParams;
  trafficControl?: TrafficControlParams;
  /** ext_authz policies of single operations, keyed by `METHOD path` as declared (the route's `operation` context extension). */
  operations: Record<string, { ipControl?: IpControlParams; trafficControl?: TrafficControlParams }>;
}

/** `key:<sha256>` */
export interface ProjectedApiKey {
  name: string;
  status: "active" | "expired" | "grace";
  expiresAt: string | null;
}

/** Units of a subscription plan's throttle limit (counted by ext_authz's plan windows). */
export type PlanUnit = "Min" | "Hour" | "Day" | "Month";

/** `sub:<sha256 of token>` */
export interface ProjectedSubscription {
  id: string;
  status: "ACTIVE" | "INACTIVE" | "REVOKED";
  applicationId: string | null;
  plan: null | {
    id: string;
    name: string;
    status: "ACTIVE" | "INACTIVE";
    throttleLimitCount: number | null;
    throttleLimitUnit: PlanUnit | null;
    stopOnQuotaReach: boolean;
    expiryTime: string | null;
  };
}

/** `app:<AppKey>` and `code:<sha256 of AppCode>`: an application authorized for the scope. */
export interface ProjectedApplication {
  appId: string;
  name: string;
  status: "ENABLED" | "DISABLED";
  extInfo: string | null;
  authorizationExpiresAt: string | null;
  /** Only in `app:` fields: the AppSecret sealed with the master key, the AppKey as associated data. */
  secretSealed?: string;
  /** Only in `app:` fields. */
  appKey?: string;
}

/** Names of the context_extensions the translator sets on each route's ext_authz settings. */
export const CONTEXT_EXTENSIONS = {
  apiId: "api_id",
  stage: "stage",
  /** `METHOD path` exactly as declared in the API's operations. */
  operation: "operation",
} as const;
