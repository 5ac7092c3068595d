// For working on the dashboard without rebuilding warren: serves web/dashboard/ from disk at / and
// /dashboard/..., and forwards /api to a running broker (warren, or RabbitMQ with its management
// plugin). Usage: node dashboard_dev_server.js PORT http://127.0.0.1:15672
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '../../web/dashboard');
const port = Number(process.argv[2] || 15680);
const api = new URL(process.argv[3] || 'http://127.0.0.1:15672');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.txt': 'text/plain',
  '.md': 'text/plain' };

http.createServer((req, res) => {
  if (req.url.startsWith('/api')) {
    const upstream = http.request({ host: api.hostname, port: api.port, path: req.url, method: req.method,
      headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    upstream.on('error', (e) => {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'bad_gateway', reason: String(e.message) }));
    });
    req.pipe(upstream);
    return;
  }
  let p = req.url.split('?')[0];
  if (p === '/') p = '/dashboard/index.html';
  const file = path.join(root, path.normalize(p.replace(/^\/dashboard\//, '/')));
  if (!p.startsWith('/dashboard/') || !file.startsWith(root)) {
    res.writeHead(404);
    res.end();
    return;
  }
  fs.readFile(file, (err, data) => {
    if (err) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-cache' });
    res.end(data);
  });
}).listen(port, '127.0.0.1', () => console.log(`dashboard on http://127.0.0.1:${port}/, API at ${api.origin}`));
