// Runs the demo: `npm start` (it builds dist/ first, which this file imports through the package name).
//   PORT        port to listen on (default 3000)
//   HOST        interface to listen on (default 127.0.0.1; 0.0.0.0 to reach it from other machines)
//   REDIS_URL   redis:// URL; without it sessions live in the process's memory and end with it
//   LOG_LEVEL   pino level (default 'warn': the plugin's warnings and security events)
import { buildApp } from './app.mjs'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
let app
try {
  // With REDIS_URL, the plugin's startup check makes this fail on an unreachable Redis, a wrong password or a
  // database index the server lacks: the demo says why and exits instead of offering a page that cannot work.
  app = await buildApp({ redis: process.env.REDIS_URL, logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
  await app.ready()
} catch (error) {
  console.error(`Session demo not started: ${error.message}`)
  process.exit(1)
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}

try {
  await app.listen({ port, host })
} catch (error) {
  if (error.code !== 'EADDRINUSE') throw error
  console.error(`Port ${port} on ${host} is already in use (another demo still running?). Stop that program, or pick another port: PORT=${port + 1} npm start`)
  await app.close()
  process.exit(1)
}
const store = process.env.REDIS_URL === undefined ? 'the in-memory store' : 'Redis'
console.log(`Session demo on ${store}: open http://${host === '0.0.0.0' ? 'localhost' : host}:${app.server.address().port}/ and sign in as alice / wonderland or bob / canwefixit`)
