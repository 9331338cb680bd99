/** A field-level problem, reported in the `errors` array of an error response. */
export interface FieldError {
  field: string;
  message: string;
}

/**
 * An error meant for the client: its status and message are sent as they are. Anything else that
 * is thrown becomes a 500 whose detail goes only to the log.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: FieldError[],
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }

  static validation(errors: FieldError[]): ApiError {
    return new ApiError(400, "Configuration validation failed", errors);
  }

  static badRequest(message: string, field?: string): ApiError {
    return new ApiError(400, message, field ? [{ field, message }] : undefined);
  }

  static notFound(message: string): ApiError {
    return new ApiError(404, message);
  }

  static conflict(message: string, field?: string): ApiError {
    return new ApiError(409, message, field ? [{ field, message }] : undefined);
  }
}

/** Turns a path like ["spec", "upstreams", 0, "url"] into "spec.upstreams[0].url". */
export function fieldPath(path: readonly PropertyKey[], prefix = ""): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}
