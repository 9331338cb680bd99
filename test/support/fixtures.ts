/** A valid RestApi request (the WSO2 document's example), with optional overrides of spec fields. */
export function restApi(name = "reading-list-api-v1.0", spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "gateway.api-platform.wso2.com/v1alpha1",
    kind: "RestApi",
    metadata: { name },
    spec: {
      displayName: "Reading-List-API",
      version: "v1.0",
      context: "/reading-list/$version",
      upstream: { main: { url: "https://apis.example.com/samples/reading-list/v1.0" } },
      policies: [
        {
          name: "set-headers",
          version: "v1",
          params: {
            request: { headers: [{ name: "x-gateway-version", value: "v1.0.0" }] },
            response: { headers: [{ name: "x-environment", value: "development" }] },
          },
        },
      ],
      operations: [
        { method: "GET", path: "/books" },
        { method: "POST", path: "/books" },
        { method: "GET", path: "/books/{id}" },
        { method: "PUT", path: "/books/{id}" },
        { method: "DELETE", path: "/books/{id}" },
      ],
      ...spec,
    },
    ...extra,
  };
}

/** A second, independent API (different name, context and paths). */
export function otherApi(name = "petstore-v1", spec: Record<string, unknown> = {}) {
  return restApi(name, {
    displayName: "Petstore",
    version: "v1",
    context: "/petstore/$version",
    policies: [],
    operations: [
      { method: "GET", path: "/pets" },
      { method: "GET", path: "/pets/{petId}" },
    ],
    ...spec,
  });
}

/** A RestAPI whose operations are all distinct (four methods on N/4 resources). */
export function apiWithOperations(name: string, operations: number) {
  const methods = ["GET", "POST", "PUT", "DELETE"];
  return {
    apiVersion: "gateway.api-platform.wso2.com/v1alpha1",
    kind: "RestApi",
    metadata: { name },
    spec: {
      displayName: name,
      version: "v1",
      context: `/${name}/$version`,
      upstream: { main: { url: "http://127.0.0.1:9/" } },
      operations: Array.from({ length: operations }, (_, i) => ({ method: methods[i % 4], path: `/res${Math.floor(i / 4)}/{id}` })),
    },
  };
}
