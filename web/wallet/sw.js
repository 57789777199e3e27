// The wallet's service worker: the page, its code and its texts come from this cache, so the live code works
// with no network at all after the first visit. Claims (POST /v1/wallet/claims) always go to the network.
const VERSION = '__BUILD_ID__' // replaced at build time by a hash of the built files
const CACHE = `citypass-wallet-${VERSION}`
const SHELL = ['./', './assets/wallet.js', './assets/wallet.css', './manifest.webmanifest', './icon.svg', './i18n.json']

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()))
})

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith('citypass-wallet-') && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim())
  )
})

self.addEventListener('fetch', (event) => {
  const request = event.request
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return
  const scope = new URL(self.registration.scope)
  if (!request.url.startsWith(scope.href)) return // the API is never cached
  const key = request.mode === 'navigate' ? new URL('./', scope).href : request
  if (request.url.endsWith('/i18n.json')) { // texts come from the issuer's catalogs: fresh when online
    event.respondWith(
      fetch(request)
        .then((res) => { const copy = res.clone(); caches.open(CACHE).then((c) => c.put(request, copy)); return res })
        .catch(() => caches.match(request))
    )
    return
  }
  event.respondWith(
    caches.match(key, { ignoreSearch: true }).then((hit) => hit || fetch(request))
  )
})
