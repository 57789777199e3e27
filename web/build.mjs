// Builds the visitors' pages into the Python package: `npm ci && npm run build` (or scripts/build-assets).
//
//   wallet/ → citypass/issuer/wallet/static/   served by the issuer at /wallet/ (an installable web app)
//   screen/ → citypass/gate/screen/static/     served by the gate daemon at /screen
//   console/ → citypass/issuer/console/static/ served by the issuer at /console/static/ (script and style of the
//              operators' server-rendered pages: htmx, the live tap stream)
//
// File names carry no hashes (the service worker lists them) and the output depends only on the sources and
// the locked package versions, so `node build.mjs --check` can rebuild into a temporary folder and compare
// byte for byte with what is committed. It prints each file's size, raw and gzipped.
import { build } from 'vite'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { gzipSync } from 'node:zlib'

const here = resolve(import.meta.dirname)
const pkg = resolve(here, '..', 'citypass')
const TARGETS = [
  { name: 'wallet', root: join(here, 'wallet'), out: join(pkg, 'issuer', 'wallet', 'static'), base: './', sw: true },
  { name: 'screen', root: join(here, 'screen'), out: join(pkg, 'gate', 'screen', 'static'), base: '/screen/', sw: false },
  { name: 'console', root: join(here, 'console'), out: join(pkg, 'issuer', 'console', 'static'), base: '/console/static/',
    sw: false, entry: 'main.js' }
]

/** Vite plugin: stamp the service worker with a hash of everything else it caches. */
function stampServiceWorker () {
  return {
    name: 'citypass-stamp-sw',
    generateBundle (_options, bundle) {
      const hash = createHash('sha256')
      for (const name of Object.keys(bundle).sort()) {
        if (name === 'sw.js') continue
        const item = bundle[name]
        hash.update(name).update(item.type === 'chunk' ? item.code : item.source)
      }
      const sw = bundle['sw.js']
      if (sw && sw.type === 'chunk') sw.code = sw.code.replace('__BUILD_ID__', hash.digest('hex').slice(0, 16))
    }
  }
}

async function buildTarget (target, outDir) {
  const input = { index: join(target.root, target.entry || 'index.html') }
  if (target.sw) input.sw = join(target.root, 'sw.js')
  await build({
    root: target.root,
    base: target.base,
    logLevel: 'warn',
    configFile: false,
    publicDir: target.sw ? join(target.root, 'public') : false,
    plugins: target.sw ? [stampServiceWorker()] : [],
    build: {
      outDir,
      emptyOutDir: true,
      target: 'es2022',
      modulePreload: false,
      reportCompressedSize: false,
      rolldownOptions: {
        input,
        output: {
          entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : `assets/${target.name}.js`),
          chunkFileNames: `assets/${target.name}-[name].js`,
          assetFileNames: `assets/${target.name}[extname]`
        }
      }
    }
  })
}

function files (dir) {
  return readdirSync(dir, { recursive: true }).map(String).filter((f) => statSync(join(dir, f)).isFile()).sort()
}

function report (target, dir) {
  let raw = 0
  let gz = 0
  for (const f of files(dir)) {
    const data = readFileSync(join(dir, f))
    const z = gzipSync(data, { level: 9 }).length
    raw += data.length
    gz += z
    console.log(`  ${target.name}/${f.padEnd(28)} ${String(data.length).padStart(7)} B  ${String(z).padStart(6)} B gzip`)
  }
  console.log(`  ${target.name}: ${raw} B, ${gz} B gzipped in all`)
}

function compare (expected, actual) {
  const a = files(expected)
  const b = files(actual)
  const problems = []
  for (const f of new Set([...a, ...b])) {
    if (!a.includes(f)) problems.push(`${f}: missing from the committed assets`)
    else if (!b.includes(f)) problems.push(`${f}: committed but not built`)
    else if (!readFileSync(join(expected, f)).equals(readFileSync(join(actual, f)))) problems.push(`${f}: differs`)
  }
  return problems
}

const check = process.argv.includes('--check')
let failed = false
for (const target of TARGETS) {
  if (!check) {
    await buildTarget(target, target.out)
    report(target, target.out)
    continue
  }
  const tmp = mkdtempSync(join(tmpdir(), `citypass-${target.name}-`))
  try {
    await buildTarget(target, tmp)
    const problems = compare(target.out, tmp)
    for (const p of problems) console.error(`${relative(here, target.out)}/${p}`)
    if (problems.length) failed = true
    else console.log(`${target.name}: the committed assets are what the sources build`)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
}
process.exit(failed ? 1 : 0)
