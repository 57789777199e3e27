// The City Pass wallet: claim a pass once, keep it on the phone, show its live code.
//
// Opening a claim link (…/wallet/#claim=cpw_…) makes a holder key in this browser, registers its public half
// with the issuer once (with a proof that this browser holds the private half) and receives the credential
// bound to it. From then on the page needs no network: every few seconds it signs a fresh presentation and
// shows it as a QR code, with a countdown. The service worker (sw.js) keeps the page itself available offline.
import QRCode from 'qrcode'
import { claimProof, fromBase64Url, makeHolderKey, present, toBase64Url } from './holder.js'
import * as store from './store.js'

const CLAIM_API = new URL('../v1/wallet/claims', location.href)
const BENEFIT_API = new URL('../v1/wallet/benefit', location.href)
const BENEFIT_EVERY_MS = 60_000 // a benefit card's uses left are asked for this often while the page is open
const CLAIM_PATTERN = /^cpw_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$/
const ZONE = 'Asia/Shanghai' // the city's time zone: validity is shown as the gates judge it
const $ = (id) => document.getElementById(id)

let catalog = { languages: ['en', 'zh'], texts: {} }
let langs = ['zh', 'en']
let ticker = null
let benefitTimer = null
let benefitLive = false // whether the uses left shown were counted by the issuer since this page started
let benefitPass = null // the benefit card being shown, asked about again when the phone comes back online

// -- texts ------------------------------------------------------------------------------------------
function t (key, lang, values = {}) {
  const text = catalog.texts[lang]?.[key] ?? catalog.texts.en?.[key] ?? key
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ''))
}

/** Fill ``el`` with one line per display language. */
function lines (el, key, values) {
  el.replaceChildren(...langs.map((lang) => {
    const span = document.createElement('span')
    span.lang = lang
    span.textContent = t(key, lang, values)
    return span
  }))
}

function chooseLanguages () {
  const have = catalog.languages
  const wanted = (navigator.languages || [navigator.language]).map((l) => l.toLowerCase().split('-')[0])
  const primary = wanted.find((l) => have.includes(l)) || 'zh'
  langs = [primary, primary === 'en' ? 'zh' : 'en'].filter((l, i, all) => have.includes(l) && all.indexOf(l) === i)
  document.documentElement.lang = langs[0]
}

async function loadTexts () {
  try {
    const res = await fetch('./i18n.json')
    if (res.ok) catalog = await res.json()
  } catch (err) {
    // no network and nothing cached yet: the ids stand in for the texts
  }
  chooseLanguages()
  lines($('title'), 'wallet.title')
}

// -- states -----------------------------------------------------------------------------------------
function say (state, key) {
  document.body.dataset.state = state
  $('pass').hidden = state !== 'live'
  if (key) lines($('message'), key)
  else $('message').replaceChildren()
}

function readClaim () {
  const params = new URLSearchParams(location.hash.slice(1))
  const token = params.get('claim')
  if (!token) return null
  // The secret must not stay in the address bar or the history.
  history.replaceState(null, '', location.pathname + location.search)
  const match = CLAIM_PATTERN.exec(token)
  return match ? { token, id: match[1] } : { token, id: null }
}

async function redeem (claim) {
  say('claiming', 'wallet.claiming')
  let key = await store.pending(claim.id)
  if (!key) {
    const made = await makeHolderKey()
    key = { claimId: claim.id, ...made }
    await store.savePending(key) // a retry after a lost answer registers the same key
  }
  const proof = await claimProof(key.alg, key.keys.privateKey, claim.id)
  const res = await fetch(CLAIM_API, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: claim.token, alg: key.alg, public_key: toBase64Url(key.publicRaw), proof: toBase64Url(proof) })
  })
  if (res.status === 401 || res.status === 404 || res.status === 409) {
    await store.dropPending(claim.id)
    return 'refused'
  }
  if (!res.ok) return 'failed'
  const grant = await res.json()
  const record = {
    claimId: claim.id,
    credentialId: grant.credential_id,
    code: grant.code,
    credential: fromBase64Url(grant.credential),
    display: grant.display,
    refreshS: grant.refresh_s,
    windowS: grant.window_s,
    alg: key.alg,
    keys: key.keys,
    claimedAt: Date.now(),
    benefitAsOf: Math.floor(Date.now() / 1000) // the claim's answer counted the uses left
  }
  await store.savePass(record)
  return record
}

// -- the live code ------------------------------------------------------------------------------------
function formatTime (unix, lang) {
  const locale = lang === 'zh' ? 'zh-CN' : lang
  return new Intl.DateTimeFormat(locale, { timeZone: ZONE, dateStyle: 'medium', timeStyle: 'short' })
    .format(new Date(unix * 1000))
}

/** One row of the details: ``key``'s label, then ``values(lang)`` on one line per language. A list of names is
 * shown joined by " · ", each name kept whole where the phone's width allows (a line wraps between names). */
function detail (dl, key, values) {
  const dt = document.createElement('dt')
  lines(dt, key)
  const dd = document.createElement('dd')
  dd.replaceChildren(...langs.map((lang) => {
    const span = document.createElement('span')
    span.lang = lang
    const value = values(lang)
    if (!Array.isArray(value)) span.textContent = value
    else {
      span.replaceChildren(...value.flatMap((name, i) => {
        const item = document.createElement('span')
        item.className = 'item'
        item.textContent = i < value.length - 1 ? `${name}\u00a0·` : name // the dot stays with the name before it
        return i ? [' ', item] : [item]
      }))
    }
    return span
  }))
  dl.append(dt, dd)
}

/** The pass's sites as the ``lang`` line names them: each site's title in that language, else its slug. A pass
 * kept from before the issuer sent ``site_names`` has only ``sites`` (Chinese titles or slugs, one list for all). */
function siteNames (d, lang) {
  if (!d.site_names?.length) return d.sites
  return d.site_names.map((site) => site.title?.[lang] || site.name)
}

function describe (pass) {
  const d = pass.display
  lines($('product'), `wallet.product.${d.product}`)
  const dl = $('details')
  dl.replaceChildren()
  if (d.sites.length) detail(dl, 'wallet.sites', (lang) => siteNames(d, lang))
  if (d.modes.length) detail(dl, 'wallet.modes', (lang) => d.modes.map((m) => t(`wallet.mode.${m}`, lang)).join(' · '))
  if (d.party > 1) detail(dl, 'wallet.party', (lang) => t('wallet.party', lang, { n: d.party }))
  if (d.benefit_period && d.benefit_left != null) {
    // offline, the last count the issuer gave, with when it counted: uses at gates since then are not in it
    const asOf = pass.benefitAsOf ?? Math.floor(pass.claimedAt / 1000)
    detail(dl, 'wallet.benefit', (lang) => t(`benefit.left.${d.benefit_period}`, lang, { n: d.benefit_left }) +
      (benefitLive ? '' : ` · ${t('wallet.as_of', lang, { time: formatTime(asOf, lang) })}`))
    document.body.dataset.benefitLeft = String(d.benefit_left)
    document.body.dataset.benefitAsOf = String(asOf)
    document.body.dataset.benefitLive = String(benefitLive)
  }
  if (d.valid_from) detail(dl, 'wallet.valid_from', (lang) => formatTime(d.valid_from, lang))
  if (d.valid_to) detail(dl, 'wallet.valid_to', (lang) => formatTime(d.valid_to, lang))
  lines($('live'), 'wallet.live')
  lines($('brightness'), 'wallet.brightness')
  $('qr').setAttribute('aria-label', t('wallet.title', 'en'))
}

function show (pass) {
  say('live')
  describe(pass)
  if (ticker) clearInterval(ticker)
  let shownAt = null
  let busy = false
  const canvas = $('qr')
  const tick = async () => {
    if (busy) return
    const now = Math.floor(Date.now() / 1000)
    if (pass.display.valid_to && now >= pass.display.valid_to) {
      say('expired', 'reason.expired')
      return
    }
    if (shownAt === null || now - shownAt >= pass.refreshS || now < shownAt) {
      busy = true
      try {
        const code = await present(pass.alg, pass.keys.privateKey, pass.credential, now)
        const width = Math.round(300 * Math.min(window.devicePixelRatio || 1, 3))
        await QRCode.toCanvas(canvas, [{ data: code, mode: 'alphanumeric' }],
          { errorCorrectionLevel: 'M', margin: 4, width, color: { dark: '#000000', light: '#ffffff' } })
        canvas.style.width = canvas.style.height = '300px'
        shownAt = now
        canvas.dataset.generatedAt = String(now)
        document.body.dataset.generatedAt = String(now)
      } finally {
        busy = false
      }
    }
    const left = Math.max(0, pass.refreshS - (now - shownAt))
    lines($('countdown'), 'wallet.refresh_in', { s: left })
    $('progress-bar').style.width = `${(100 * left) / pass.refreshS}%`
  }
  tick()
  ticker = setInterval(tick, 1000)
  keepScreenOn()
  followBenefit(pass)
}

// -- a benefit card's uses left: live from the issuer when online, the last count offline ----------------
async function refreshBenefit (pass) {
  try {
    const now = Math.floor(Date.now() / 1000)
    const presentation = await present(pass.alg, pass.keys.privateKey, pass.credential, now) // proves the phone holds it
    const res = await fetch(BENEFIT_API, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ presentation })
    })
    if (!res.ok) throw new Error(`status ${res.status}`)
    const uses = await res.json()
    pass.display = { ...pass.display, benefit_left: uses.benefit_left, benefit_period: uses.benefit_period }
    pass.benefitAsOf = uses.as_of
    benefitLive = true
    await store.savePass(pass)
  } catch (err) {
    benefitLive = false // offline or refused: keep showing the last count, with its time
  }
  if (document.body.dataset.state === 'live') describe(pass)
}

function followBenefit (pass) {
  if (benefitTimer) clearInterval(benefitTimer)
  benefitTimer = null
  benefitPass = pass.display.benefit_period ? pass : null
  if (!benefitPass) return
  refreshBenefit(pass)
  benefitTimer = setInterval(() => refreshBenefit(pass), BENEFIT_EVERY_MS)
}

async function keepScreenOn () {
  try {
    await navigator.wakeLock?.request('screen')
  } catch (err) {
    // not granted (e.g. battery saver): the brightness hint is still shown
  }
}

// -- start ----------------------------------------------------------------------------------------
window.addEventListener('online', () => benefitPass && refreshBenefit(benefitPass))
document.addEventListener('visibilitychange', () => !document.hidden && benefitPass && refreshBenefit(benefitPass))

async function main () {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('./sw.js').catch(() => {})
  }
  await loadTexts()
  if (!window.isSecureContext || !crypto.subtle) {
    say('unsupported', 'wallet.unsupported')
    return
  }
  const claim = readClaim()
  if (claim) {
    if (claim.id === null) {
      say('refused', 'wallet.refused')
      return
    }
    const kept = await store.pass(claim.id)
    if (kept) {
      show(kept)
      return
    }
    let result
    try {
      result = await redeem(claim)
    } catch (err) {
      result = 'failed'
    }
    if (typeof result === 'string') say(result, `wallet.${result}`)
    else show(result)
    return
  }
  const all = await store.passes()
  if (all.length) show(all.sort((a, b) => b.claimedAt - a.claimedAt)[0])
  else say('empty', 'wallet.no_pass')
}

main()
