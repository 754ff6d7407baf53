// origin.mjs: a tiny HTTP server on a free loopback port that stands for "another web app": it
// serves one blank page, from which the browser tests call nuri's API cross-origin.
// Prints "listening on http://127.0.0.1:PORT" once bound.
import http from 'node:http';

const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>another origin</title><p>another origin</p>');
});
server.listen(0, '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
