import { create, toBinary, type Message } from "@bufbuild/protobuf";
import { expect } from "chai";
import {
  decodeDeltaDiscoveryResponse,
  decodeDiscoveryResponse,
  discoverySchemas,
  encodeDeltaDiscoveryResponse,
  encodeDiscoveryResponse,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from "../../packages/control-plane/src/xds/protocol";

/*
 * The responses frame the pre-encoded resources by hand (protocol.ts); they must be exactly what
 * toBinary writes for the whole message, for every size of length prefix.
 */
const ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const whole = (desc: ReturnType<typeof discoverySchemas>["response"], value: unknown) => Buffer.from(toBinary(desc, create(desc, value as never) as Message));
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
// Values whose lengths cross the 1-, 2-, 3- and 4-byte varint boundaries (and an empty one).
const SIZES = [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152];

describe("xds protocol: response encoding", () => {
  it("encodes a DiscoveryResponse exactly as toBinary does, for every length-prefix size", () => {
    for (const size of SIZES) {
      const value: DiscoveryResponse = {
        versionInfo: `v${size}`,
        typeUrl: ROUTE,
        nonce: "7",
        resources: [
          { typeUrl: ROUTE, value: bytes(size, 1) },
          { typeUrl: ROUTE, value: bytes(3, 2) },
        ],
        controlPlane: { identifier: "apigw" },
      };
      const ours = encodeDiscoveryResponse(value);
      expect(ours.equals(whole(discoverySchemas().response, value)), `size ${size}`).to.equal(true);
      const back = decodeDiscoveryResponse(ours);
      expect(back.versionInfo).to.equal(value.versionInfo);
      expect(back.nonce).to.equal("7");
      expect(back.resources.map((r) => Buffer.from(r.value).equals(Buffer.from(value.resources.find((x) => x.value.length === r.value.length)!.value)))).to.deep.equal([true, true]);
    }
  });

  it("encodes an empty response and one without optional fields as toBinary does", () => {
    for (const value of [{}, { typeUrl: ROUTE, nonce: "1" }, { versionInfo: "", resources: [], typeUrl: ROUTE }] as Partial<DiscoveryResponse>[]) {
      expect(encodeDiscoveryResponse(value).equals(whole(discoverySchemas().response, value))).to.equal(true);
    }
  });

  it("encodes a DeltaDiscoveryResponse exactly as toBinary does, with removals and resources without a body", () => {
    for (const size of SIZES) {
      const value: DeltaDiscoveryResponse = {
        systemVersionInfo: `s${size}`,
        typeUrl: ROUTE,
        nonce: "9",
        resources: [
          { name: "apigw-routes", version: "abc", resource: { typeUrl: ROUTE, value: bytes(size, 3) } },
          { name: "other", version: "def" },
        ],
        removedResources: ["gone-1", "gone-2"],
        controlPlane: { identifier: "apigw" },
      };
      const ours = encodeDeltaDiscoveryResponse(value);
      expect(ours.equals(whole(discoverySchemas().deltaResponse, value)), `size ${size}`).to.equal(true);
      const back = decodeDeltaDiscoveryResponse(ours);
      expect(back.resources.map((r) => [r.name, r.version, r.resource?.value.length])).to.deep.equal([
        ["apigw-routes", "abc", size],
        ["other", "def", undefined],
      ]);
      expect(back.removedResources).to.deep.equal(["gone-1", "gone-2"]);
    }
  });
});
