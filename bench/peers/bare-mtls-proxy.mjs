// The baseline the sidecar is measured against: the least a Node mTLS reverse proxy can do.
// https.createServer with requestCert, the peer's certificate read once per connection, a
// kept-alive undici Pool to the app, no policy, no framing checks of its own.
// Usage: node bare-mtls-proxy.mjs <cert.pem> <key.pem> <ca.pem> <app-port>; prints its port.
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { Pool } from 'undici';

const [cert, key, ca, appPort] = process.argv.slice(2);
const pool = new Pool(`http://127.0.0.1:${appPort}`, { connections: 64, pipelining: 1 });
const peers = new WeakMap();
const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(ca), requestCert: true, rejectUnauthorized: true }, (req, res) => {
  const xfcc = `URI=${peers.get(req.socket) ?? ''}`;
  pool.request({ method: req.method, path: req.url, headers: { ...req.headers, 'x-forwarded-client-cert': xfcc }, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }).then(
    ({ statusCode, headers, body }) => {
      res.writeHead(statusCode, headers);
      body.pipe(res);
    },
    () => res.writeHead(502).end(),
  );
});
server.on('secureConnection', (socket) => peers.set(socket, socket.getPeerCertificate().subjectaltname));
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
