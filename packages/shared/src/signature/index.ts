export * from "./stringToSign";
export * from "./sign";
export * from "./request";
