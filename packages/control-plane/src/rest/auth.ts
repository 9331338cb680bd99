import type { NextFunction, Request, Response } from "express";
import { constantTimeEqual } from "@apigw/shared";
import type { Role, User } from "../config";

export interface AuthenticatedUser {
  name: string;
  role: Role;
}

/**
 * HTTP basic authentication. The bodies match WSO2's gateway (`error` key) and also carry our
 * error shape (`status`, `message`), so clients of either kind can read them.
 */
export function basicAuth(users: User[]) {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    const match = typeof header === "string" ? /^Basic ([A-Za-z0-9+/=]{1,1024})$/i.exec(header.trim()) : null;
    if (!match) return deny(res, 401, "no valid authentication credentials provided");
    const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return deny(res, 401, "no valid authentication credentials provided");
    const name = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    // Compare against every user so the time taken does not reveal which names exist.
    let found: User | undefined;
    for (const user of users) {
      const nameOk = constantTimeEqual(user.name, name);
      const passwordOk = constantTimeEqual(user.password, password);
      if (nameOk && passwordOk) found = user;
    }
    if (!found) return deny(res, 401, "authentication failed");
    res.locals.user = { name: found.name, role: found.role } satisfies AuthenticatedUser;
    next();
  };
}

export function deny(res: Response, status: 401 | 403, message: string): void {
  if (status === 401) res.setHeader("WWW-Authenticate", 'Basic realm="apigw management", charset="UTF-8"');
  res.status(status).json({ status: "error", message, error: message });
}
