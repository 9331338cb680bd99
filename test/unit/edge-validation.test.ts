import { expect } from "chai";
import { durationInRange, headerValue, terminalLogStream, validatePolicy } from "@apigw/shared";
import { contentErrors, MAX_DEPTH } from "../../packages/control-plane/src/rest/content";

describe("validation at the edge (pure)", () => {
  describe("contentErrors", () => {
    it("names every string with a NUL or a lone surrogate, values and keys, at any depth", () => {
      const body = JSON.parse('{"a":"ok","b":["x","y\\u0000"],"c":{"d\\u0000e":1,"f":{"g":"a\\udc00b","h":"\\ud83d\\ude00"}},"i":"\\ud800"}');
      expect(contentErrors(body, "")).to.deep.equal([
        { field: "b[1]", message: "must not contain NUL characters" },
        { field: "c.d\\u0000e", message: "the key must not contain NUL characters" },
        { field: "c.f.g", message: "must be valid Unicode (it contains a lone UTF-16 surrogate)" },
        { field: "i", message: "must be valid Unicode (it contains a lone UTF-16 surrogate)" },
      ]);
    });

    it("accepts well-formed Unicode (surrogate pairs included), numbers, booleans and null", () => {
      expect(contentErrors({ a: "日本語 😀", b: 1, c: true, d: null, e: [[], {}] }, "")).to.deep.equal([]);
    });

    it("refuses nesting deeper than the limit without using the call stack", () => {
      let deep: unknown = "leaf";
      for (let i = 0; i < 100_000; i++) deep = [deep];
      const errors = contentErrors(deep, "");
      expect(errors).to.have.length(1);
      expect(errors[0]!.message).to.equal(`is nested too deeply (at most ${MAX_DEPTH} levels)`);
      let fine: unknown = "leaf";
      for (let i = 0; i < MAX_DEPTH; i++) fine = { x: fine };
      expect(contentErrors(fine, "")).to.deep.equal([]);
    });
  });

  describe("durations", () => {
    it("are within 1ms and the largest protobuf Duration", () => {
      for (const ok of ["1ms", "500ms", "1.5ms", "5s", "1m30s", "87658h", "315576000000s"]) expect(durationInRange(ok), ok).to.equal(true);
      for (const bad of ["0.0000001ms", "0.9ms", "999999999h", "315576000001s"]) expect(durationInRange(bad), bad).to.equal(false);
    });

    it("out of range, a circuit breaker's ejectionTime is refused naming the field and the range", () => {
      for (const ejectionTime of ["999999999h", "0.0000001ms"]) {
        const issues = validatePolicy({ name: "circuitBreaker", params: { consecutiveErrors: 5, ejectionTime } }, "api").issues;
        expect(issues).to.deep.equal([{ path: ["params", "ejectionTime"], message: "must be between 1ms and 315576000000s (the range of a protobuf Duration)" }]);
      }
    });
  });

  describe("header values", () => {
    it("follow Envoy's strict rule: no control character but tab, at most 8192 bytes of UTF-8", () => {
      for (const ok of ["plain", "tab\there", "ünïcödé", "x".repeat(8192)]) expect(headerValue.safeParse(ok).success, ok).to.equal(true);
      for (const bad of ["a\rb", "a\nb", "a\u0000b", "a\u0001b", "a\u007fb", "€".repeat(3000)]) expect(headerValue.safeParse(bad).success, JSON.stringify(bad)).to.equal(false);
    });
  });

  describe("terminalLogStream", () => {
    it("gives a pretty printer on a terminal and nothing (pino's JSON lines) otherwise", () => {
      expect(terminalLogStream({ isTTY: false })).to.equal(undefined);
      expect(terminalLogStream({})).to.equal(undefined);
      const stream = terminalLogStream({ isTTY: true });
      expect(stream).to.not.equal(undefined);
    });
  });
});
