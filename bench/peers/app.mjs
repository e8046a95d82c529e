// The app behind every proxy in the sidecar bench: answers GET /hello, prints its port.
import * as http from 'node:http';
const server = http.createServer((_req, res) => res.end('Hello version: v1\n'));
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));
