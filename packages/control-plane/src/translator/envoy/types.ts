/** One Envoy resource: its name (the xDS resource name), its type URL, and its proto3 JSON (Envoy's snake_case field names; nested typed_config values carry "@type", the top level does not). */
export interface NamedResource {
  name: string;
  typeUrl: string;
  resource: Record<string, unknown>;
}

/** Everything the translator produces, per xDS type, each list sorted by name. */
export interface EnvoyResources {
  listeners: NamedResource[];
  routes: NamedResource[];
  clusters: NamedResource[];
  endpoints: NamedResource[];
}
