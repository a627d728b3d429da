// @nexrender/server as its own bin serves it (micro around the package's handler, with the
// secret checked on every request), bound to the loopback address only: the bin listens on
// every address. Usage: NODE_PATH=<node_modules> NEXRENDER_DATABASE=<file.json> \
//   node serve.cjs <port> <secret>
const micro = require('micro')
const { createHandler } = require('@nexrender/server')
const { version } = require('@nexrender/server/package.json')

const [port, secret] = process.argv.slice(2)
micro(createHandler(secret || '')).listen(Number(port), '127.0.0.1', () => {
    console.log(`@nexrender/server ${version} listening on 127.0.0.1:${port}`)
})
