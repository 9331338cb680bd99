import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

/**
 * AES-256-GCM encryption of recoverable secrets (AppSecrets) with the master key.
 * Stored form: `v1.<iv>.<tag>.<ciphertext>` (base64url parts). The version prefix lets a later
 * release rotate the algorithm or key without guessing the format of old rows.
 */
export class SecretBox {
  private readonly key: Buffer;

  constructor(masterKey: string) {
    if (!masterKey || masterKey.length < 16) {
      throw new Error("master key must be at least 16 characters");
    }
    // A 64-hex-character master key is used as is; anything else is stretched with SHA-256.
    this.key = /^[0-9a-fA-F]{64}$/.test(masterKey)
      ? Buffer.from(masterKey, "hex")
      : createHash("sha256").update(masterKey, "utf8").digest();
  }

  encrypt(plaintext: string, associatedData = ""): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(associatedData, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const tag = cipher.getAuthTag();
    return ["v1", iv.toString("base64url"), tag.toString("base64url"), ciphertext.toString("base64url")].join(".");
  }

  /** Throws when the value was not produced by this key (or was tampered with). */
  decrypt(sealed: string, associatedData = ""): string {
    const parts = sealed.split(".");
    if (parts.length !== 4 || parts[0] !== "v1") throw new Error("unsupported sealed secret format");
    const [, iv, tag, ciphertext] = parts as [string, string, string, string];
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(associatedData, "utf8"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
  }
}
