export * from "./crypto/hash";
export * from "./crypto/secretBox";
export * from "./credentials/apiKey";
export * from "./model/stages";
export * from "./policies/types";
export * from "./policies/validate";
export * from "./validation/primitives";
