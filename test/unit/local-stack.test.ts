import { readFileSync } from "node:fs";
import { expect } from "chai";
import YAML from "yaml";

/** docker compose cannot run here; this checks what can be checked without it. */
describe("local stack (docker-compose.yml)", () => {
  const compose = YAML.parse(readFileSync("docker-compose.yml", "utf8"), { uniqueKeys: true });
  const services = compose.services as Record<string, any>;

  it("has the product's services, each with a health check", () => {
    expect(Object.keys(services)).to.have.members(["postgres", "redis", "control-plane", "ext-authz", "demo-upstream", "envoy"]);
    for (const [name, service] of Object.entries(services)) {
      expect(service.healthcheck?.test, `${name} healthcheck`).to.be.an("array").that.is.not.empty;
    }
  });

  it("only depends on services that exist, on their health", () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [dependency, condition] of Object.entries((service.depends_on ?? {}) as Record<string, any>)) {
        expect(services, `${name} depends on ${dependency}`).to.have.property(dependency);
        expect(condition.condition).to.equal("service_healthy");
      }
    }
  });

  it("mounts files that exist and matches the ports the bootstrap uses", () => {
    const envoy = services.envoy;
    const mount = (envoy.volumes as string[]).find((v) => v.includes("envoy.yaml"))!;
    const source = mount.split(":")[0]!;
    expect(readFileSync(source, "utf8")).to.contain("ads_config");
    const bootstrap = YAML.parse(readFileSync("envoy/envoy.yaml", "utf8"));
    const clusters = Object.fromEntries((bootstrap.static_resources.clusters as any[]).map((c) => [c.name, c]));
    const address = (name: string) => clusters[name].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(address("xds_cluster")).to.deep.equal({ address: "control-plane", port_value: 18000 });
    expect(address("ext_authz")).to.deep.equal({ address: "ext-authz", port_value: 9191 });
    expect(services["control-plane"].ports).to.include("18000:18000");
    const upstream = services["demo-upstream"].volumes[0].split(":")[0];
    expect(readFileSync(upstream, "utf8")).to.contain("createServer");
  });

  it("gives the control plane and ext_authz the same master key and Redis", () => {
    const cp = services["control-plane"].environment;
    const authz = services["ext-authz"].environment;
    expect(cp.MASTER_KEY).to.equal(authz.MASTER_KEY);
    expect(cp.REDIS_URL).to.equal(authz.REDIS_URL);
  });
});
