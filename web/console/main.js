// The operators' console (server-rendered by the issuer, citypass/issuer/console): htmx for the parts of a page
// that refresh themselves (hx-get … hx-trigger="every 5s"), and the live tap stream (server-sent events).
// No inline script anywhere: the pages' content security policy allows this file and nothing else.
import htmx from 'htmx.org'
import './console.css'

window.htmx = htmx

const FIELDS = ['at', 'site', 'gate_id', 'product', 'decision', 'reason', 'persons', 'credential_id']
const MAX_ROWS = 200

function cell (text) {
  const td = document.createElement('td')
  td.textContent = text === null || text === undefined ? '' : String(text)
  return td
}

// A tap names its site by number; the stream's `sites` event (sent as it opens, and again should a tap name a site
// added since) maps each number to the title in the operator's language (the slug where there is none) and the
// slug, shown on hover. Only a number the issuer knows no site for is shown as the number itself.
function siteCell (sites, number) {
  const site = sites[number]
  const td = cell(site ? site.title || site.name : number)
  if (site) td.title = `${site.name} (${number})`
  return td
}

// A tap's product, decision and reason are codes (`annual`, `allow`, `expired`); the page's `data-codes` table (built
// into the page by the issuer, in the operator's language: citypass/issuer/console/codetexts.py) names each, and the
// code stays on hover for searching logs by it. A code the table does not name is shown as the code itself.
const NAMED = ['product', 'decision', 'reason']

function codeCell (names, code) {
  if (code === null || code === undefined || code === '') return cell('')
  const td = cell((names && names[code]) || code)
  td.title = String(code)
  td.dataset.code = String(code)
  return td
}

// The sites' local time (the table says its UTC offset in minutes), as the server-rendered pages show it.
function clock (at, offsetMinutes) {
  const d = new Date((at + offsetMinutes * 60) * 1000)
  return d.toISOString().slice(11, 19)
}

function liveTaps () {
  const table = document.getElementById('live-taps')
  if (!table) return
  const body = table.querySelector('tbody')
  const counter = document.getElementById('live-count')
  const offset = Number(table.dataset.utcOffset || 480)
  let seen = 0
  let sites = {}
  const codes = JSON.parse(table.dataset.codes || '{}')
  const source = new EventSource(table.dataset.stream)
  source.addEventListener('open', () => { document.body.dataset.stream = 'open' })
  source.addEventListener('error', () => { document.body.dataset.stream = 'retrying' })
  source.addEventListener('sites', (event) => { sites = JSON.parse(event.data) })
  source.addEventListener('tap', (event) => {
    const tap = JSON.parse(event.data)
    const row = document.createElement('tr')
    row.dataset.tapId = tap.tap_id
    row.className = tap.decision === 'allow' ? 'allow' : 'deny'
    for (const field of FIELDS) {
      if (field === 'site') row.appendChild(siteCell(sites, tap.site))
      else if (NAMED.includes(field)) row.appendChild(codeCell(codes[field], tap[field]))
      else row.appendChild(cell(field === 'at' ? clock(tap.at, offset) : tap[field]))
    }
    body.prepend(row)
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1)
    seen += 1
    if (counter) counter.textContent = String(seen)
    document.body.dataset.lastTap = tap.tap_id
  })
}

document.addEventListener('DOMContentLoaded', liveTaps)
