// A small stand-in for a server process in activities/server's tests
// (the real Backstage backend runs in the tests that need it): it listens
// on PORT and answers 200 on every path, driven by environment variables:
//   EXIT_CODE=n      print a few lines and exit n before listening
//   IGNORE_TERM=1    ignore SIGTERM (the stop path that needs SIGKILL)
//   NEVER_READY=1    answer 503 forever
//   CHILD=1          start `sleep 1000` in the same process group (first)
//   PRINT=text       print text once listening (e.g. a secret's value)
'use strict';
const http = require('node:http');
const { spawn } = require('node:child_process');

console.log(`fakeserver starting pid ${process.pid}`);
if (process.env.PRINT) console.log(process.env.PRINT);
if (process.env.CHILD === '1') {
  const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
  console.log(`child sleep pid ${c.pid}`);
}
if (process.env.EXIT_CODE) {
  for (let i = 1; i <= 25; i++) console.error(`startup problem line ${i}`);
  console.error('Backend failed to start up');
  process.exit(Number(process.env.EXIT_CODE));
}
if (process.env.IGNORE_TERM === '1') {
  process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
} else {
  process.on('SIGTERM', () => {
    console.log('SIGTERM: shutting down');
    process.exit(0);
  });
}
const status = process.env.NEVER_READY === '1' ? 503 : 200;
http
  .createServer((req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: status === 200 ? 'ok' : 'starting' }));
  })
  .listen(Number(process.env.PORT), '127.0.0.1', () => {
    console.log(`listening on ${process.env.PORT}`);
  });
