// A tiny upstream for the local stack: echoes the request it received as JSON.
import http from "node:http";

const port = Number(process.env.PORT ?? 8081);
http
  .createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }, null, 2));
    });
  })
  .listen(port, () => console.log(`demo upstream listening on ${port}`));
