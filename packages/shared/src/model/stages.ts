/**
 * Stages an API is served in. RELEASE is the main virtual host, TEST the sandbox one
 * (Alibaba's PRE stage has no counterpart in the WSO2 model and is not offered).
 */
export const STAGES = ["RELEASE", "TEST"] as const;
export type Stage = (typeof STAGES)[number];

export const DEFAULT_MAIN_VHOST = "*";
export const DEFAULT_SANDBOX_VHOST = "sandbox-*";

export const DEPLOYMENT_STATES = ["deployed", "undeployed"] as const;
export type DeploymentState = (typeof DEPLOYMENT_STATES)[number];

export const HTTP_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** `$version` in a context is a plain text substitution of spec.version. */
export function resolveContext(context: string, version: string): string {
  return context.split("$version").join(version);
}
